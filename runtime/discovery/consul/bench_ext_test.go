package consul_test

import (
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/cctest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/propagation"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/consul"
)

// BenchmarkDeregisterToLastCall measures, per trial, the time from
// deregistering an instance from the agent to the last call that reaches
// it. Trials are 2 s apart: the resolver's rate limit (1 query a second,
// burst 5) coalesces changes closer together than that, by design, and a
// lone change must not wait for it. Run it with -benchtime=20x; it reports
// the median and p90.
//
//	go test ./runtime/discovery/consul -run '^$' -bench DeregisterToLastCall -benchtime 20x
func BenchmarkDeregisterToLastCall(b *testing.B) {
	a := startAgent(b, "")
	client, err := api.NewClient(&api.Config{Address: a.HTTPAddr()})
	if err != nil {
		b.Fatal(err)
	}
	stay, leave := propagation.StartBackend(b), propagation.StartBackend(b)
	register := func(id string, be *propagation.Backend) {
		host, port := splitAddr(b, be.Addr)
		if err := client.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: id, Name: "bench", Address: host, Port: port}); err != nil {
			b.Fatal(err)
		}
	}
	register("stay", stay)
	// Stale reads (the default) and consistent reads, in one run.
	for _, stale := range []bool{true, false} {
		b.Run(fmt.Sprintf("stale=%v", stale), func(b *testing.B) {
			benchDeregister(b, a.HTTPAddr()+"/bench?stale="+strconv.FormatBool(stale), client, stay, leave, register)
		})
	}
}

func benchDeregister(b *testing.B, target string, client *api.Client, stay, leave *propagation.Backend, register func(string, *propagation.Backend)) {
	rb, rec := cctest.Wrap(consul.NewBuilder())
	conn, err := grpc.NewClient("consul://"+target, grpc.WithResolvers(rb),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	propagation.Measure(b, conn, stay, leave, propagation.Registry{
		Add: func() { register("leave", leave) },
		Remove: func() {
			if err := client.Agent().ServiceDeregister("leave"); err != nil {
				b.Fatal(err)
			}
		},
		WaitRemoved: func() { rec.WaitLen(b, 1) },
		Pause:       2 * time.Second,
	})
}

func splitAddr(tb testing.TB, addr string) (string, int) {
	tb.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		tb.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	return host, p
}

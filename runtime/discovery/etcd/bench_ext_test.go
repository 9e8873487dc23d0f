package etcd_test

import (
	"encoding/json"
	"testing"

	etcdnaming "go.etcd.io/etcd/client/v3/naming/resolver"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/cctest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/propagation"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/etcd"
)

// BenchmarkDeregisterToLastCall measures, per trial, the time from deleting
// an instance's key to the last call that reaches that instance, with our
// resolver and, in the same run, etcd's own client/v3/naming resolver. Run
// it with -benchtime=30x (30 trials); it reports the median and p90.
//
//	go test ./runtime/discovery/etcd -run '^$' -bench DeregisterToLastCall -benchtime 30x
func BenchmarkDeregisterToLastCall(b *testing.B) {
	s := startEtcd(b)
	for _, bc := range []struct {
		name    string
		target  string
		builder func() resolver.Builder
	}{
		{"lb", "etcd://" + s.Endpoint() + "/services/bench", func() resolver.Builder { return etcd.NewBuilder() }},
		{"etcd-naming", "etcd:////services/bench", func() resolver.Builder {
			rb, err := etcdnaming.NewBuilder(rawClient(b, s.Endpoint()))
			if err != nil {
				b.Fatal(err)
			}
			return rb
		}},
	} {
		b.Run(bc.name, func(b *testing.B) { benchDeregister(b, s.Endpoint(), bc.target, bc.builder()) })
	}
}

func benchDeregister(b *testing.B, endpoint, target string, builder resolver.Builder) {
	c := rawClient(b, endpoint)
	stay, leave := propagation.StartBackend(b), propagation.StartBackend(b)
	put := func(key, addr string) {
		v, _ := json.Marshal(map[string]any{"Op": 0, "Addr": addr})
		if _, err := c.Put(ctxT(b), key, string(v)); err != nil {
			b.Fatal(err)
		}
	}
	put("/services/bench/stay", stay.Addr)
	rb, rec := cctest.Wrap(builder)
	conn, err := grpc.NewClient(target, grpc.WithResolvers(rb), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	propagation.Measure(b, conn, stay, leave, propagation.Registry{
		Add: func() { put("/services/bench/leave", leave.Addr) },
		Remove: func() {
			if _, err := c.Delete(ctxT(b), "/services/bench/leave"); err != nil {
				b.Fatal(err)
			}
		},
		WaitRemoved: func() { rec.WaitLen(b, 1) },
	})
}

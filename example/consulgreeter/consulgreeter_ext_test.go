package consulgreeter_test

// End-to-end through the generated Consul helpers against a real agent:
// servers registered by RegisterGreeterBalancedServer, found by
// NewGreeterBalancedClient.

import (
	"context"
	"net"
	"os"
	"testing"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/example/consulgreeter"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/example/helloworld"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/consulagent"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/resolvertest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/lb"
)

func TestMain(m *testing.M) { resolvertest.VerifyTestMain(m) }

const timeout = 20 * time.Second

type greeter struct {
	consulgreeter.UnimplementedGreeterServer
	backend string
}

func (g *greeter) SayHello(_ context.Context, req *helloworld.HelloRequest) (*helloworld.HelloReply, error) {
	return &helloworld.HelloReply{Message: "Hello, " + req.GetName(), Backend: g.backend}, nil
}

type server struct {
	addr string
	reg  *lb.Registration
}

func startServer(t *testing.T, agent string) server {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	addr := lis.Addr().String()
	reg, err := consulgreeter.RegisterGreeterBalancedServer(s, &greeter{backend: addr},
		lb.WithRegistryAddress(agent), lb.WithAdvertiseAddress(addr))
	if err != nil {
		t.Fatalf("RegisterGreeterBalancedServer: %v", err)
	}
	go s.Serve(lis)
	t.Cleanup(func() { reg.Shutdown(context.Background()) })
	return server{addr: addr, reg: reg}
}

// spread makes n calls and counts them per backend.
func spread(t *testing.T, c *consulgreeter.GreeterBalancedClient, n int) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	got := map[string]int{}
	for range n {
		r, err := c.SayHello(ctx, &helloworld.HelloRequest{Name: "consul"})
		if err != nil {
			t.Fatalf("SayHello: %v", err)
		}
		got[r.GetBackend()]++
	}
	return got
}

// waitFor calls until the backends answering 60 calls in a row are
// exactly want. Calls may fail until the first instance passes: the client
// then fails fast, saying no instance passes.
func waitFor(t *testing.T, c *consulgreeter.GreeterBalancedClient, want ...string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := map[string]int{}
		var err error
		for range 60 {
			var r *helloworld.HelloReply
			if r, err = c.SayHello(context.Background(), &helloworld.HelloRequest{Name: "wait"}); err != nil {
				break
			}
			got[r.GetBackend()]++
		}
		ok := err == nil && len(got) == len(want)
		for _, w := range want {
			ok = ok && got[w] > 0
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("calls reach %v (last error %v), want exactly %v", got, err, want)
		}
	}
}

func TestConsulGreeter(t *testing.T) {
	a, err := consulagent.Start(t.TempDir(), "")
	if err == consulagent.ErrNoBinary && os.Getenv("LB_REQUIRE_TOOLS") == "" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer a.Stop()
	ss := []server{startServer(t, a.HTTPAddr()), startServer(t, a.HTTPAddr()), startServer(t, a.HTTPAddr())}
	c, err := consulgreeter.NewGreeterBalancedClient(context.Background(), lb.WithInsecure(), lb.WithRegistryAddress(a.HTTPAddr()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Only passing instances are served: the three show up once Consul's
	// gRPC checks of our health service pass.
	waitFor(t, c, ss[0].addr, ss[1].addr, ss[2].addr)
	got := spread(t, c, 300)
	for _, s := range ss {
		if got[s.addr] < 90 || got[s.addr] > 110 {
			t.Errorf("backend %s got %d of 300 calls, want 100±10%%: %v", s.addr, got[s.addr], got)
		}
	}

	ss[0].reg.Health().SetServingStatus(consulgreeter.Greeter_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
	waitFor(t, c, ss[1].addr, ss[2].addr)

	if err := ss[1].reg.Deregister(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, c, ss[2].addr)
}

// TestAgentDownKeepsServing: the failure policy declared in the proto
// (keep the last instances for up to 5 minutes) reaches the shared watch,
// and with the agent stopped every call still succeeds.
func TestAgentDownKeepsServing(t *testing.T) {
	a, err := consulagent.Start(t.TempDir(), "")
	if err == consulagent.ErrNoBinary && os.Getenv("LB_REQUIRE_TOOLS") == "" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer a.Stop()
	ss := []server{startServer(t, a.HTTPAddr()), startServer(t, a.HTTPAddr())}
	c, err := consulgreeter.NewGreeterBalancedClient(context.Background(), lb.WithInsecure(), lb.WithRegistryAddress(a.HTTPAddr()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitFor(t, c, ss[0].addr, ss[1].addr)
	w := resolvertest.WaitWatch(t, "consul", "helloworld", func(w discovery.WatchInfo) bool { return w.Key.Registry == a.HTTPAddr() })
	if w.Key.Policy != "maxstale=5m0s" {
		t.Errorf("the watch's failure policy is %q, want the proto's maxstale=5m0s", w.Key.Policy)
	}
	a.Stop()
	resolvertest.WaitWatch(t, "consul", "helloworld", func(w discovery.WatchInfo) bool {
		return w.Key.Registry == a.HTTPAddr() && w.Err != nil
	})
	if got := spread(t, c, 100); len(got) != 2 {
		t.Errorf("with the agent down calls reached %v, want both backends", got)
	}
}

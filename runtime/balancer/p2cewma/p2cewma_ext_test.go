package p2cewma_test

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/resolvertest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/static"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/lb"
)

func TestMain(m *testing.M) { resolvertest.VerifyTestMain(m) }

// backend serves grpc.health.v1, answers the "count" check after its delay,
// and counts those calls.
type backend struct {
	addr  string
	delay atomic.Int64 // ns
	calls atomic.Int64
}

func startBackend(t *testing.T) *backend {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{addr: lis.Addr().String()}
	s := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if r, ok := req.(*healthpb.HealthCheckRequest); ok && r.GetService() == "count" {
			b.calls.Add(1)
			if d := b.delay.Load(); d > 0 {
				time.Sleep(time.Duration(d)) // the backend's own slowness, not a wait in the test
			}
			return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
		}
		return h(ctx, req)
	}))
	healthpb.RegisterHealthServer(s, health.NewServer())
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return b
}

// TestSlowBackend: 5 backends, one 20 ms
// slower, 2 callers through lb.Dial with P2CEWMA: the slow one gets at most
// 2% of the calls; once fast again it gets its share back.
func TestSlowBackend(t *testing.T) {
	var bs []*backend
	var addrs []string
	for range 5 {
		b := startBackend(t)
		bs, addrs = append(bs, b), append(addrs, b.addr)
	}
	slow := bs[4]
	slow.delay.Store(int64(20 * time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), resolvertest.Timeout)
	defer cancel()
	c, err := lb.Dial(ctx, &lb.Service{Discovery: static.Config{Addresses: addrs}, Balancer: lb.P2CEWMA{}}, lb.WithInsecure(), lb.WithBlock())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// calls makes n calls from 2 goroutines at once (one per core: more
	// only queue on this machine's CPUs), and returns the share of them
	// the slow backend answered.
	calls := func(n int) float64 {
		before, beforeSlow := int64(0), slow.calls.Load()
		for _, b := range bs {
			before += b.calls.Load()
		}
		var wg sync.WaitGroup
		var failed atomic.Int64
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range n / 2 {
					if _, err := healthpb.NewHealthClient(c).Check(ctx, &healthpb.HealthCheckRequest{Service: "count"}); err != nil {
						failed.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		if f := failed.Load(); f != 0 {
			t.Errorf("%d calls failed", f)
		}
		after := int64(0)
		for _, b := range bs {
			after += b.calls.Load()
		}
		return float64(slow.calls.Load()-beforeSlow) / float64(after-before)
	}
	share := calls(4000)
	t.Logf("slow backend (+20 ms): %.2f%% of 4,000 calls", 100*share)
	if share > 0.02 {
		t.Errorf("the slow backend got %.2f%% of the calls, want at most 2%%", 100*share)
	}
	// Fast again: within a few seconds it gets about its 20% share.
	slow.delay.Store(0)
	fast := time.Now()
	for {
		got := calls(1000)
		if got >= 0.12 {
			t.Logf("share back (%.0f%%) %v after it was fast again", 100*got, time.Since(fast))
			break
		}
		if time.Since(fast) > resolvertest.Timeout {
			t.Fatalf("the backend is fast again but gets only %.1f%% of the calls", 100*got)
		}
	}
}

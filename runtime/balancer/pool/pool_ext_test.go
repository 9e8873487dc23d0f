package pool_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/resolvertest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/testbackend"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/static"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/lb"
)

func TestMain(m *testing.M) { resolvertest.VerifyTestMain(m) }

// waitConns makes calls through c until every backend has accepted want
// connections, and fails if one accepts more or the deadline passes.
func waitConns(t *testing.T, c *lb.Conn, bs []*testbackend.Backend, want int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), resolvertest.Timeout)
	defer cancel()
	for {
		done := true
		for _, b := range bs {
			n := b.Conns.Load()
			if n > want {
				t.Fatalf("backend %s accepted %d connections, want %d", b.Addr, n, want)
			}
			done = done && n == want
		}
		if done {
			return
		}
		if err := testbackend.Call(ctx, c); err != nil {
			t.Fatalf("call while waiting for %d connections per backend: %v", want, err)
		}
	}
}

// TestPoolOfFour: PoolSize 4 over 3 backends is one ClientConn and one
// watch, with 4 transports to each address, and least_request balances
// over all 12 with one view of each backend: a backend holding each call
// 100 ms has at most 2 of 4 callers' calls in flight at once, as without a
// pool (TestHeldCallsSteerNewOnes in runtime/balancer/leastrequest), so 2
// or fewer on average however busy the machine (about 1.3 measured).
// Without one view, each of its transports would count only its own calls,
// and it would hold 2.7-3.4 on average.
func TestPoolOfFour(t *testing.T) {
	bs, addrs := testbackend.StartN(t, 3)
	const hold = 100 * time.Millisecond
	bs[2].Delay.Store(int64(hold))
	ctx, cancel := context.WithTimeout(context.Background(), resolvertest.Timeout)
	defer cancel()
	svc := &lb.Service{Name: "pooled", FullName: testbackend.EchoService, Discovery: static.Config{Addresses: addrs}, Balancer: lb.LeastRequest{}, PoolSize: 4}
	c, err := lb.Dial(ctx, svc, lb.WithInsecure(), lb.WithBlock())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitConns(t, c, bs, 4) // 4 transports to each backend, all under c's one ClientConn
	watches := 0
	for _, w := range discovery.Watches() {
		if w.Key.Scheme == static.Scheme && strings.Contains(w.Key.Service, addrs[0]) {
			watches++
			if w.Subscribers != 1 {
				t.Errorf("watch %+v has %d subscribers, want 1", w.Key, w.Subscribers)
			}
		}
	}
	if watches != 1 {
		t.Errorf("%d static watches, want 1", watches)
	}
	inFlight, share, held, took := testbackend.HeldInFlight(t, c, 4, 2000, bs, bs[2], hold)
	t.Logf("backend holding calls 100 ms, pool of 4: %d of 2,000 calls (%.1f%%) in %v, %.2f in flight on average", held, 100*share, took, inFlight)
	if inFlight > 2 {
		t.Errorf("the backend holding calls had %.2f of the 4 callers' calls in flight on average (%d calls of %v in %v), want at most 2", inFlight, held, hold, took)
	}
	for _, b := range bs {
		if n := b.Conns.Load(); n != 4 {
			t.Errorf("backend %s accepted %d connections after the calls, want 4", b.Addr, n)
		}
	}
}

// TestPoolRoundRobin: grpc-go's own round_robin under the pool spreads the
// calls over every transport of every address.
func TestPoolRoundRobin(t *testing.T) {
	bs, addrs := testbackend.StartN(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), resolvertest.Timeout)
	defer cancel()
	svc := &lb.Service{Name: "pooled-rr", FullName: testbackend.EchoService, Discovery: static.Config{Addresses: addrs}, PoolSize: 3}
	c, err := lb.Dial(ctx, svc, lb.WithInsecure(), lb.WithBlock())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitConns(t, c, bs, 3)
	for _, b := range bs {
		b.Calls.Store(0)
	}
	for range 600 {
		if err := testbackend.Call(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	// Within 10%: the last transports may still be passing their first
	// health check when the calls start.
	for _, b := range bs {
		if n := b.Calls.Load(); n < 270 || n > 330 {
			t.Errorf("backend %s got %d of 600 calls, want 300 ± 30", b.Addr, n)
		}
	}
}

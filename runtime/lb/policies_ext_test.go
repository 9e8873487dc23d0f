package lb_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/load"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/resolvertest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/testbackend"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/static"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/lb"
)

// policies are every policy of this module that spreads calls.
var policies = []struct {
	name string
	b    lb.Balancer
	pool int
}{
	{"round_robin", lb.RoundRobin{}, 0},
	{"random", lb.Random{}, 0},
	{"p2c_ewma", lb.P2CEWMA{}, 0},
	{"least_request", lb.LeastRequest{}, 0},
	{"weighted", lb.WeightedRoundRobin{}, 0},
	{"consistent_hash", lb.ConsistentHash{}, 0}, // calls without a key: spread
	{"ring_hash", lb.RingHash{}, 0},
	{"least_request_pool_3", lb.LeastRequest{}, 3},
}

func endpoints(bs ...*testbackend.Backend) resolver.State {
	var s resolver.State
	for _, b := range bs {
		s.Endpoints = append(s.Endpoints, resolver.Endpoint{Addresses: []resolver.Address{{Addr: b.Addr}}})
	}
	return s
}

// waitCalled makes calls through c until every backend of bs has answered
// one since the call began, or the deadline passes.
func waitCalled(t *testing.T, ctx context.Context, c grpc.ClientConnInterface, bs ...*testbackend.Backend) {
	t.Helper()
	before := make([]int64, len(bs))
	for i, b := range bs {
		before[i] = b.Calls.Load()
	}
	for {
		all := true
		for i, b := range bs {
			all = all && b.Calls.Load() > before[i]
		}
		if all {
			return
		}
		if err := testbackend.Call(ctx, c); err != nil {
			t.Fatalf("call while waiting for every backend to answer: %v", err)
		}
	}
}

// TestMembershipChange: under every policy, with 4 callers running, a
// backend removed from the resolver and then stopped gracefully, and a new
// one added, fail no call; every backend in the set is reached, and the new
// one gets calls.
func TestMembershipChange(t *testing.T) {
	for _, p := range policies {
		t.Run(p.name, func(t *testing.T) {
			bs, _ := testbackend.StartN(t, 4)
			r := manual.NewBuilderWithScheme("lbtest")
			r.InitialState(endpoints(bs[:3]...))
			ctx, cancel := context.WithTimeout(context.Background(), resolvertest.Timeout)
			defer cancel()
			svc := &lb.Service{FullName: testbackend.EchoService, Balancer: p.b, PoolSize: p.pool}
			c, err := lb.Dial(ctx, svc, lb.WithInsecure(), lb.WithBlock(), lb.WithTarget("lbtest:///members"), lb.WithDialOptions(grpc.WithResolvers(r)))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			waitCalled(t, ctx, c, bs[:3]...)

			l := load.Start(4, func(cctx context.Context) error { return testbackend.Call(cctx, c) })
			defer l.Stop()
			// Remove bs[0], then stop it: its calls in flight finish.
			r.UpdateState(endpoints(bs[1:3]...))
			waitCalled(t, ctx, c, bs[1], bs[2])
			bs[0].GracefulStop()
			// Add bs[3]: it gets calls.
			r.UpdateState(endpoints(bs[1:4]...))
			waitCalled(t, ctx, c, bs[3])
			if calls, failed, firstErr := l.Stop(); failed > 0 {
				t.Errorf("%d of %d calls failed while the set changed; first: %v", failed, calls, firstErr)
			}
		})
	}
}

// TestHealthUnderEveryPolicy: under every policy, a backend whose health
// turns NOT_SERVING stops getting calls, and gets them again once SERVING.
func TestHealthUnderEveryPolicy(t *testing.T) {
	for _, p := range policies {
		t.Run(p.name, func(t *testing.T) {
			bs, addrs := testbackend.StartN(t, 3)
			ctx, cancel := context.WithTimeout(context.Background(), resolvertest.Timeout)
			defer cancel()
			svc := &lb.Service{FullName: testbackend.EchoService, Discovery: static.Config{Addresses: addrs}, Balancer: p.b, PoolSize: p.pool}
			c, err := lb.Dial(ctx, svc, lb.WithInsecure(), lb.WithBlock())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			echo := func() {
				t.Helper()
				if err := testbackend.Echo(ctx, c, "Echo", wrapperspb.String("")); err != nil {
					t.Fatal(err)
				}
			}
			called := func(b *testbackend.Backend) int { return b.Keys()[""] }
			// Every backend answers.
			for called(bs[0]) == 0 || called(bs[1]) == 0 || called(bs[2]) == 0 {
				echo()
			}
			bs[0].SetServing(false)
			// Once the client has seen it (a call lands elsewhere 100
			// times in a row), bs[0] gets no more calls.
			for streak := 0; streak < 100; {
				n := called(bs[0])
				echo()
				if called(bs[0]) == n {
					streak++
				} else {
					streak = 0
				}
			}
			n := called(bs[0])
			for range 300 {
				echo()
			}
			if got := called(bs[0]) - n; got != 0 {
				t.Errorf("the NOT_SERVING backend got %d of 300 calls", got)
			}
			bs[0].SetServing(true)
			for called(bs[0]) == n {
				echo()
			}
		})
	}
}

// TestPickFirstLeavesNotServing: under PICK_FIRST every call goes to one
// backend; once it turns NOT_SERVING the calls move to another, none
// failing, and stay there.
func TestPickFirstLeavesNotServing(t *testing.T) {
	bs, addrs := testbackend.StartN(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), resolvertest.Timeout)
	defer cancel()
	svc := &lb.Service{FullName: testbackend.EchoService, Discovery: static.Config{Addresses: addrs}, Balancer: lb.PickFirst{}}
	c, err := lb.Dial(ctx, svc, lb.WithInsecure(), lb.WithBlock())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echo := func() {
		t.Helper()
		if err := testbackend.Echo(ctx, c, "Echo", wrapperspb.String("")); err != nil {
			t.Fatal(err)
		}
	}
	which := func() (hit []int) {
		for _, b := range bs {
			hit = append(hit, b.Keys()[""])
		}
		return hit
	}
	for range 50 {
		echo()
	}
	first := -1
	for i, n := range which() {
		switch {
		case n == 50:
			first = i
		case n != 0:
			t.Fatalf("pick_first spread 50 calls: %v", which())
		}
	}
	if first < 0 {
		t.Fatalf("pick_first spread 50 calls: %v", which())
	}
	bs[first].SetServing(false)
	// The calls move (the deadline of ctx bounds the wait); then none
	// comes back.
	for sum(which()) == which()[first] {
		echo()
	}
	before := which()
	for range 100 {
		echo()
	}
	after := which()
	if after[first] != before[first] {
		t.Errorf("the NOT_SERVING backend got %d more calls", after[first]-before[first])
	}
	moved := 0
	for i := range bs {
		if i != first && after[i]-before[i] == 100 {
			moved++
		}
	}
	if moved != 1 {
		t.Errorf("after the move 100 calls went %v (before %v), want all to one other backend", after, before)
	}
}

func sum(xs []int) (n int) {
	for _, x := range xs {
		n += x
	}
	return n
}

// TestHealthCheckOff: with DisableHealthCheck, a backend whose health
// service does not know the service (NOT_FOUND, a server that publishes
// no status) still gets calls; with it on, it gets none.
func TestHealthCheckOff(t *testing.T) {
	bs, addrs := testbackend.StartN(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), resolvertest.Timeout)
	defer cancel()
	// The backends publish the health of EchoService only.
	svc := &lb.Service{FullName: "lbtest.Unpublished", Discovery: static.Config{Addresses: addrs}, DisableHealthCheck: true}
	c, err := lb.Dial(ctx, svc, lb.WithInsecure(), lb.WithBlock())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitCalled(t, ctx, c, bs...)

	svc.DisableHealthCheck = false
	wctx, wcancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer wcancel()
	if _, err := lb.Dial(wctx, svc, lb.WithInsecure(), lb.WithBlock()); err == nil {
		t.Error("with health checking on, an instance that publishes no status became READY")
	}
}

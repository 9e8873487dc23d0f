package slowstart_test

import (
	"context"
	"fmt"
	"math"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	_ "github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/leastrequest"
	_ "github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/p2cewma"
	_ "github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/random"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/slowstart"
	_ "github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/weighted"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/internal/clock"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const timeout = 60 * time.Second

// startBackends starts n gRPC servers on loopback, each serving the health
// service, and returns their addresses.
func startBackends(t *testing.T, n int) []string {
	t.Helper()
	addrs := make([]string, n)
	for i := range addrs {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s := grpc.NewServer()
		healthpb.RegisterHealthServer(s, health.NewServer())
		go s.Serve(l)
		t.Cleanup(s.Stop)
		addrs[i] = l.Addr().String()
	}
	return addrs
}

// client is a channel whose resolver the test feeds.
type client struct {
	cc *grpc.ClientConn
	h  healthpb.HealthClient
}

func newClient(t *testing.T, child string, eps []resolver.Endpoint) *client {
	t.Helper()
	r := manual.NewBuilderWithScheme("slowstart")
	r.InitialState(resolver.State{Endpoints: eps})
	cfg := fmt.Sprintf(`{"loadBalancingConfig":[{%q:{"window":"10s","childPolicy":[{%q:{}}]}}]}`, slowstart.Name, child)
	cc, err := grpc.NewClient(r.Scheme()+":///test", grpc.WithResolvers(r),
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDefaultServiceConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return &client{cc: cc, h: healthpb.NewHealthClient(cc)}
}

// calls makes n calls, from 4 callers, and counts them by backend.
func (c *client) calls(t *testing.T, n int) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	const callers = 4
	counts := make([]map[string]int, callers)
	errs := make(chan error, callers)
	for k := range callers {
		counts[k] = map[string]int{}
		go func() {
			for i := k; i < n; i += callers {
				var p peer.Peer
				if _, err := c.h.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p)); err != nil {
					errs <- err
					return
				}
				counts[k][p.Addr.String()]++
			}
			errs <- nil
		}()
	}
	for range callers {
		if err := <-errs; err != nil {
			t.Fatalf("call: %v", err)
		}
	}
	got := map[string]int{}
	for _, m := range counts {
		for a, k := range m {
			got[a] += k
		}
	}
	return got
}

// waitAll calls until every address has had a call: every instance is
// READY and in the picker.
func (c *client) waitAll(t *testing.T, addrs []string) {
	t.Helper()
	seen := map[string]bool{}
	deadline := time.Now().Add(timeout)
	for len(seen) < len(addrs) {
		if time.Now().After(deadline) {
			t.Fatalf("calls reached %d of %d backends", len(seen), len(addrs))
		}
		for a := range c.calls(t, 10) {
			seen[a] = true
		}
	}
}

// endpoints gives addrs[i] the registration time at[i] and weight w[i]
// (0: none).
func endpoints(addrs []string, at []time.Time, w []uint32) []resolver.Endpoint {
	eps := make([]resolver.Endpoint, len(addrs))
	for i, a := range addrs {
		md := discovery.Metadata{RegisteredAt: at[i]}
		if w != nil {
			md.Weight = w[i]
		}
		eps[i] = discovery.Endpoint(a, md)
	}
	return eps
}

func factor(age time.Duration) float64 { return max(0.1, min(1, age.Seconds()/10)) }

// TestRamp: 9 warm backends and 1 new one under each policy, 1 simulated
// second a step: under round robin, random and weighted round robin the
// new one's share each step is its factor's, f·w/(9+f·w) within 3 points,
// its full share at the window's end; a second client built mid-window
// continues the same ramp. Under least request and p2c_ewma the new one
// takes much less than the others early and as much at the end (p2c_ewma:
// over two steps, see below).
func TestRamp(t *testing.T) {
	for _, tc := range []struct {
		child  string
		calls  int
		weight uint32 // the new instance's, the others' 1; 0 for none
		exact  bool   // the share follows f·w/(9+f·w)
	}{
		{child: "round_robin", calls: 1000, exact: true},
		{child: "lb_random", calls: 1500, exact: true},
		{child: "lb_weighted_round_robin", calls: 1000, weight: 2, exact: true},
		{child: "lb_least_request", calls: 500},
		{child: "lb_p2c_ewma", calls: 500},
	} {
		t.Run(tc.child, func(t *testing.T) {
			t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
			c := clock.NewFake(t0)
			t.Cleanup(slowstart.SetClock(c))
			addrs := startBackends(t, 10)
			at := make([]time.Time, 10)
			var w []uint32
			if tc.weight != 0 {
				w = make([]uint32, 10)
			}
			for i := range at {
				at[i] = t0.Add(-time.Hour)
				if w != nil {
					w[i] = 1
				}
			}
			at[9] = t0 // the new one
			if w != nil {
				w[9] = tc.weight
			}
			eps := endpoints(addrs, at, w)
			clients := []*client{newClient(t, tc.child, eps)}
			clients[0].waitAll(t, addrs)
			wn := float64(max(tc.weight, 1))
			var early, late int // the new instance's calls, first client, steps 0-1 and 10-11
			// The ramp's first and last steps, each second; every other
			// second between (the test's calls are most of its time).
			prev := 0
			for _, step := range []int{0, 1, 3, 5, 7, 9, 10, 11} {
				age := time.Duration(step) * time.Second
				c.Advance(time.Duration(step-prev) * time.Second)
				prev = step
				if step == 5 {
					clients = append(clients, newClient(t, tc.child, eps))
					clients[1].waitAll(t, addrs)
				}
				f := factor(age)
				want := f * wn / (9 + f*wn)
				for i, cl := range clients {
					got := cl.calls(t, tc.calls)
					n := got[addrs[9]]
					share := float64(n) / float64(tc.calls)
					warm := (1 - share) / 9 // a warm instance's on average
					t.Logf("client %d, %v: new %.3f (want %.3f), warm %.3f", i, age, share, want, warm)
					switch {
					case tc.exact && math.Abs(share-want) > 0.03:
						t.Errorf("client %d at %v: the new instance's share %.3f, want %.3f ± 0.03", i, age, share, want)
					case tc.child == "lb_least_request" && step <= 2 && share > warm/2:
						t.Errorf("client %d at %v: the new instance's share %.3f, want less than half a warm one's %.3f", i, age, share, warm)
					case tc.child == "lb_least_request" && step >= 10 && math.Abs(share-0.1) > 0.05:
						t.Errorf("client %d at %v: the new instance's share %.3f, want 0.1 ± 0.05", i, age, share)
					}
					if i == 0 && step <= 1 {
						early += n
					}
					if i == 0 && step >= 10 {
						late += n
					}
				}
			}
			if tc.child == "lb_p2c_ewma" {
				// p2c_ewma sends a call to the lower score of two
				// (latency times calls in flight): with 4 callers shares
				// follow the loopback's noise, a step's may be 0 or
				// twice the even one. Over two steps: well
				// below even early, and a share like the others' at the
				// end.
				if share := float64(early) / float64(2*tc.calls); share > 0.05 {
					t.Errorf("the new instance's share over the first 2 s %.3f, want below 0.05", share)
				}
				if share := float64(late) / float64(2*tc.calls); share < 0.03 {
					t.Errorf("the new instance's share from the window's end %.3f, want above 0.03", share)
				}
			}
		})
	}
}

// TestAllNewRampsNothing: a fleet registered at once takes equal shares
// from the start, as does a fleet without registration times.
func TestAllNewRampsNothing(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	c := clock.NewFake(t0)
	t.Cleanup(slowstart.SetClock(c))
	addrs := startBackends(t, 10)
	at := make([]time.Time, 10)
	for i := range at {
		at[i] = t0.Add(-2 * time.Second)
	}
	for name, eps := range map[string][]resolver.Endpoint{
		"registered at once":    endpoints(addrs, at, nil),
		"no registration times": endpoints(addrs, make([]time.Time, 10), nil),
	} {
		cl := newClient(t, "round_robin", eps)
		cl.waitAll(t, addrs)
		got := cl.calls(t, 1000)
		for _, a := range addrs {
			if share := float64(got[a]) / 1000; math.Abs(share-0.1) > 0.03 {
				t.Errorf("%s: %s took %.3f of the calls, want 0.1 ± 0.03", name, a, share)
			}
		}
	}
}

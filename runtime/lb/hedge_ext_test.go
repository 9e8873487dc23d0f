package lb_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/resolvertest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/testbackend"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/static"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/lb"
)

func hedgedService(addrs []string, budget *lb.RetryBudget) *lb.Service {
	return &lb.Service{
		FullName:    testbackend.EchoService,
		Discovery:   static.Config{Addresses: addrs},
		Methods:     []lb.Method{{Name: "Echo", Idempotent: true, Hedging: &lb.Hedging{MaxAttempts: 3, Delay: 10 * time.Millisecond}}},
		RetryBudget: budget,
	}
}

// atLeast returns how many of d are min or more.
func atLeast(d []time.Duration, min time.Duration) int {
	n := 0
	for _, x := range d {
		if x >= min {
			n++
		}
	}
	return n
}

// p99 returns the 99th percentile of d.
func p99(d []time.Duration) time.Duration {
	slices.Sort(d)
	return d[len(d)*99/100]
}

// TestHedgingBeatsASlowBackend: of 3 backends one answers 50 ms late.
// The same 300 calls, unhedged and hedged (3 attempts, 10 ms apart), in
// one run: under a quarter as many hedged calls as unhedged ones wait
// 50 ms, and no backend ever gets two copies of one call.
func TestHedgingBeatsASlowBackend(t *testing.T) {
	bs, addrs := testbackend.StartN(t, 3)
	bs[2].Delay.Store(int64(50 * time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 2*resolvertest.Timeout)
	defer cancel()
	plain := &lb.Service{FullName: testbackend.EchoService, Discovery: static.Config{Addresses: addrs}}
	run := func(svc *lb.Service, prefix string) ([]time.Duration, *lb.Conn) {
		c, err := lb.Dial(ctx, svc, lb.WithInsecure(), lb.WithBlock())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		waitCalled(t, ctx, c, bs...)
		var lat []time.Duration
		for i := range 300 {
			start := time.Now()
			if err := testbackend.Echo(ctx, c, "Echo", wrapperspb.String(fmt.Sprintf("%s-%d", prefix, i))); err != nil {
				t.Fatal(err)
			}
			lat = append(lat, time.Since(start))
		}
		return lat, c
	}
	unhedged, _ := run(plain, "plain")
	hedged, c := run(hedgedService(addrs, nil), "hedged")
	st := c.HedgeStats()
	slowUnhedged, slowHedged := atLeast(unhedged, 50*time.Millisecond), atLeast(hedged, 50*time.Millisecond)
	t.Logf("p99 unhedged %v, hedged %v; calls of 50 ms or more: %d unhedged, %d hedged; hedges sent %d, won %d",
		p99(unhedged), p99(hedged), slowUnhedged, slowHedged, st.Sent, st.Won)
	// What hedging guarantees is that a call does not wait for the slow
	// backend: about a third of the unhedged calls take its 50 ms, and a
	// hedged one only when its hedge stalls too (a loaded machine's
	// stalls reach a p99, so the count is what is checked, not the tail).
	if slowUnhedged < 50 || slowHedged >= slowUnhedged/4 {
		t.Errorf("calls of 50 ms or more: %d unhedged, %d hedged; want about 100 unhedged and under a quarter of that hedged", slowUnhedged, slowHedged)
	}
	if st.Sent == 0 || st.Won == 0 {
		t.Errorf("hedge stats %+v: want hedges sent and won", st)
	}
	for _, b := range bs {
		for k, n := range b.Keys() {
			if n > 1 {
				t.Errorf("backend %s got call %q %d times", b.Addr, k, n)
			}
		}
	}
}

// TestHedgesStopWhenTheBudgetIsSpent: every backend fails. With a budget
// of 10 tokens, hedges stop once half are spent: 3 attempts, then 2 (3
// when the second call's 10 ms hedge goes out before its first attempt
// has failed, as on a loaded machine), then 1 per call, instead of 3
// each.
func TestHedgesStopWhenTheBudgetIsSpent(t *testing.T) {
	bs, addrs := testbackend.StartN(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), resolvertest.Timeout)
	defer cancel()
	reader, mp := newMeterProvider(t)
	c, err := lb.Dial(ctx, hedgedService(addrs, &lb.RetryBudget{MaxTokens: 10, TokenRatio: 0.1}), lb.WithInsecure(), lb.WithBlock(), lb.WithMetrics(mp))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitCalled(t, ctx, c, bs...)
	for _, b := range bs {
		b.Fail.Store(true)
	}
	for i := range 10 {
		if err := testbackend.Echo(ctx, c, "Echo", wrapperspb.String(fmt.Sprint("f-", i))); err == nil {
			t.Fatal("a call succeeded on failing backends")
		}
	}
	perCall := make([]int, 10)
	for _, b := range bs {
		for k, n := range b.Keys() {
			var i int
			if _, err := fmt.Sscanf(k, "f-%d", &i); err == nil {
				perCall[i] += n
			}
		}
	}
	st := c.HedgeStats()
	t.Logf("10 failing calls: attempts %v; hedges %+v", perCall, st)
	if perCall[0] != 3 || perCall[1] < 2 || perCall[1] > 3 || slices.ContainsFunc(perCall[2:], func(n int) bool { return n != 1 }) || st.Throttled < 8 {
		t.Errorf("10 failing calls made %v attempts (hedges %+v), want 3, then 2 or 3, then 1 each", perCall, st)
	}
	got := collect(t, reader)
	if v := got.sum("lb.client.retry_budget.exhausted", attribute.String("grpc.method", testbackend.EchoService+"/Echo")); v != float64(st.Throttled) {
		t.Errorf("lb.client.retry_budget.exhausted = %v, want HedgeStats().Throttled = %d", v, st.Throttled)
	}
	if v := got.sum("lb.client.hedges", attribute.String("lb.hedge", "sent")); v != float64(st.Sent) {
		t.Errorf("lb.client.hedges{sent} = %v, want HedgeStats().Sent = %d", v, st.Sent)
	}
}

// TestRetryOnlyWhatIsIdempotent: a backend stopped in the middle of a
// call. The idempotent method (no retry declared: DefaultRetry) runs again
// on the other backend and succeeds; the other method fails and is not
// sent again.
func TestRetryOnlyWhatIsIdempotent(t *testing.T) {
	for _, tc := range []struct {
		idempotent bool
		wantErr    bool
	}{{true, false}, {false, true}} {
		t.Run(fmt.Sprint("idempotent=", tc.idempotent), func(t *testing.T) {
			bs, addrs := testbackend.StartN(t, 2)
			ctx, cancel := context.WithTimeout(context.Background(), resolvertest.Timeout)
			defer cancel()
			svc := &lb.Service{FullName: testbackend.EchoService, Discovery: static.Config{Addresses: addrs},
				Methods: []lb.Method{{Name: "Echo", Idempotent: tc.idempotent}}}
			c, err := lb.Dial(ctx, svc, lb.WithInsecure(), lb.WithBlock())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			waitCalled(t, ctx, c, bs...)
			// bs[0] holds each call; the call that reaches it is in
			// flight when it stops.
			bs[0].Delay.Store(int64(time.Minute))
			var victim string
			for i := 0; victim == ""; i++ {
				key := fmt.Sprint("k-", i)
				done := make(chan error, 1)
				go func() { done <- testbackend.Echo(ctx, c, "Echo", wrapperspb.String(key)) }()
				// Either it came back from bs[1], or it is held by bs[0].
				for {
					if bs[0].Keys()[key] == 1 {
						victim = key
						bs[0].Stop()
						err = <-done
						break
					}
					select {
					case err := <-done:
						if err != nil {
							t.Fatal(err)
						}
					case <-time.After(time.Millisecond): // polls bs[0]'s count of the call
						continue
					}
					break
				}
			}
			t.Logf("call %s, its backend stopped mid-call: %v", victim, err)
			if (err != nil) != tc.wantErr {
				t.Errorf("call %s: err = %v, want an error: %v", victim, err, tc.wantErr)
			}
			want := 0
			if !tc.wantErr {
				want = 1
			}
			if got := bs[1].Keys()[victim]; got != want {
				t.Errorf("the other backend got call %s %d times, want %d", victim, got, want)
			}
		})
	}
}

// dialHedgedPair starts two backends and dials them, hedging Echo with 2
// attempts 10 ms apart, once both have answered.
func dialHedgedPair(t *testing.T, ctx context.Context) ([]*testbackend.Backend, *lb.Conn) {
	t.Helper()
	bs, addrs := testbackend.StartN(t, 2)
	svc := hedgedService(addrs, nil)
	svc.Methods[0].Hedging.MaxAttempts = 2
	c, err := lb.Dial(ctx, svc, lb.WithInsecure(), lb.WithBlock())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	waitCalled(t, ctx, c, bs...)
	return bs, c
}

// TestHedgedCallReportsTheWinner: of two backends one answers 50 ms late;
// each call is hedged after 10 ms (2 attempts) under round robin. The
// caller's grpc.Header, grpc.Trailer and grpc.Peer all name the backend
// whose answer the call returned (each backend puts its address in its
// header and trailer), and grpc.OnFinish runs once per call, with the
// call's error. The loser's attempt ends last (cancelled): it must not
// write its empty header and its peer through the caller's options.
func TestHedgedCallReportsTheWinner(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*resolvertest.Timeout)
	defer cancel()
	bs, c := dialHedgedPair(t, ctx)
	bs[1].Delay.Store(int64(50 * time.Millisecond))
	for i := range 20 {
		var header, trailer metadata.MD
		var p peer.Peer
		var finished []error
		err := c.Invoke(ctx, "/"+testbackend.EchoService+"/Echo", wrapperspb.String(fmt.Sprint("w-", i)), &emptypb.Empty{},
			grpc.Header(&header), grpc.Trailer(&trailer), grpc.Peer(&p), grpc.OnFinish(func(err error) { finished = append(finished, err) }))
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		h, tr := header.Get(testbackend.BackendKey), trailer.Get(testbackend.BackendKey)
		if p.Addr == nil || len(h) != 1 || len(tr) != 1 || h[0] != p.Addr.String() || tr[0] != p.Addr.String() {
			t.Errorf("call %d: header %v, trailer %v, peer %v: want all three to name the backend that answered", i, h, tr, p.Addr)
		}
		if len(finished) != 1 || finished[0] != nil {
			t.Errorf("call %d: OnFinish ran with %v, want once with <nil>", i, finished)
		}
	}
	if st := c.HedgeStats(); st.Sent == 0 {
		t.Errorf("hedge stats %+v: no call was hedged, so nothing was tested", st)
	}
}

// TestHedgedCallFailsWithItsOwnOutcome: both backends fail every call.
// OnFinish runs once, with the error the call returns, and the trailer
// and peer are those of the attempt whose error it is.
func TestHedgedCallFailsWithItsOwnOutcome(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), resolvertest.Timeout)
	defer cancel()
	bs, c := dialHedgedPair(t, ctx)
	for _, b := range bs {
		b.Fail.Store(true)
	}
	var trailer metadata.MD
	var p peer.Peer
	var finished []error
	err := c.Invoke(ctx, "/"+testbackend.EchoService+"/Echo", wrapperspb.String("fail"), &emptypb.Empty{},
		grpc.Trailer(&trailer), grpc.Peer(&p), grpc.OnFinish(func(err error) { finished = append(finished, err) }))
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("call on failing backends: %v, want UNAVAILABLE", err)
	}
	if len(finished) != 1 || finished[0] != err {
		t.Errorf("OnFinish ran with %v, want once with %v", finished, err)
	}
	if tr := trailer.Get(testbackend.BackendKey); p.Addr == nil || len(tr) != 1 || tr[0] != p.Addr.String() {
		t.Errorf("trailer %v, peer %v: want both to name the backend whose error the call returned", tr, p.Addr)
	}
}

// firstAttempts is a client interceptor after the hedging one: it sees
// each attempt of a call, and records where each call's first attempt
// went.
type firstAttempts struct {
	mu    sync.Mutex
	seen  map[any]bool   // requests whose first attempt went out
	first map[string]int // first attempts by backend address
}

func (f *firstAttempts) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	f.mu.Lock()
	first := !f.seen[req]
	f.seen[req] = true
	f.mu.Unlock()
	if !first {
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	var p peer.Peer
	err := invoker(ctx, method, req, reply, cc, append(opts, grpc.Peer(&p))...)
	if p.Addr != nil {
		f.mu.Lock()
		f.first[p.Addr.String()]++
		f.mu.Unlock()
	}
	return err
}

// TestHedgesLeaveTheOrderAlone: of 3 backends one answers 50 ms late, and
// each call is hedged after 10 ms. Under round robin and
// lb_weighted_round_robin the calls' first attempts spread evenly: the
// hedges (every call that starts on the slow backend has one) do not move
// the order on (a hedge that took the next place would give the slow
// backend half of the first attempts, and so hedge half of all calls).
func TestHedgesLeaveTheOrderAlone(t *testing.T) {
	for _, b := range []lb.Balancer{lb.RoundRobin{}, lb.WeightedRoundRobin{}} {
		t.Run(b.BalancerName(), func(t *testing.T) {
			bs, addrs := testbackend.StartN(t, 3)
			slow := bs[2]
			slow.Delay.Store(int64(50 * time.Millisecond))
			ctx, cancel := context.WithTimeout(context.Background(), 2*resolvertest.Timeout)
			defer cancel()
			svc := hedgedService(addrs, nil)
			svc.Methods[0].Hedging.MaxAttempts = 2
			fa := &firstAttempts{seen: map[any]bool{}, first: map[string]int{}}
			c, err := lb.Dial(ctx, svc, lb.WithInsecure(), lb.WithBlock(), lb.WithBalancer(b),
				lb.WithDialOptions(grpc.WithChainUnaryInterceptor(fa.intercept)))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			waitCalled(t, ctx, c, bs...)
			const calls = 300
			for i := range calls {
				if err := testbackend.Echo(ctx, c, "Echo", wrapperspb.String(fmt.Sprint("o-", i))); err != nil {
					t.Fatal(err)
				}
			}
			fa.mu.Lock()
			defer fa.mu.Unlock()
			share := float64(fa.first[slow.Addr]) / calls
			t.Logf("first attempts %v (slow %s: %.1f%%); hedges %+v", fa.first, slow.Addr, 100*share, c.HedgeStats())
			// Round robin gives it 1/3 exactly; weighted round robin
			// keeps a place per goroutine stripe, and each attempt runs
			// on a goroutine of its own: 1/3 give or take its noise
			// (σ ≈ 2.7% over 300 calls). A hedge taking a place gives 1/2.
			if share < 0.25 || share > 0.42 {
				t.Errorf("the slow backend got %.1f%% of the first attempts, want 1/3", 100*share)
			}
		})
	}
}

// TestHedgedCallWithoutStreamLeavesTheOptions: a hedged call whose
// deadline has passed opens no stream; as grpc-go does for such a call,
// the caller's header and trailer are left as they were (and OnFinish
// still runs once, with the call's error).
func TestHedgedCallWithoutStreamLeavesTheOptions(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), resolvertest.Timeout)
	defer cancel()
	_, c := dialHedgedPair(t, ctx)
	past, stop := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	defer stop()
	header, trailer := metadata.Pairs("kept", "1"), metadata.Pairs("kept", "1")
	var finished []error
	err := c.Invoke(past, "/"+testbackend.EchoService+"/Echo", wrapperspb.String("late"), &emptypb.Empty{},
		grpc.Header(&header), grpc.Trailer(&trailer), grpc.OnFinish(func(err error) { finished = append(finished, err) }))
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("call past its deadline: %v, want DEADLINE_EXCEEDED", err)
	}
	if header.Get("kept") == nil || trailer.Get("kept") == nil {
		t.Errorf("header %v, trailer %v: want them left as they were", header, trailer)
	}
	if len(finished) != 1 || finished[0] != err {
		t.Errorf("OnFinish ran with %v, want once with %v", finished, err)
	}
}

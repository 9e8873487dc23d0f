package lb_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
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

// p99 returns the 99th percentile of d.
func p99(d []time.Duration) time.Duration {
	slices.Sort(d)
	return d[len(d)*99/100]
}

// TestHedgingBeatsASlowBackend: of 3 backends one answers 50 ms late.
// The same 300 calls, unhedged and hedged (3 attempts, 10 ms apart), in
// one run: the hedged p99 is under half the unhedged one, and no backend
// ever gets two copies of one call.
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
	t.Logf("p99 unhedged %v, hedged %v; hedges sent %d, won %d", p99(unhedged), p99(hedged), st.Sent, st.Won)
	if p99(hedged) >= p99(unhedged)/2 {
		t.Errorf("hedged p99 %v, unhedged %v: want under half", p99(hedged), p99(unhedged))
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
// of 10 tokens, a call's attempts stop once half are spent: 3 attempts,
// then 2, then 1 per call, instead of 3 each.
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
	attempts := 0
	for _, b := range bs {
		for k, n := range b.Keys() {
			if len(k) > 2 && k[:2] == "f-" {
				attempts += n
			}
		}
	}
	st := c.HedgeStats()
	t.Logf("10 failing calls: %d attempts; hedges %+v", attempts, st)
	if attempts != 13 || st.Throttled < 8 {
		t.Errorf("10 failing calls made %d attempts (hedges %+v), want 3 + 2 + 8×1 = 13", attempts, st)
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

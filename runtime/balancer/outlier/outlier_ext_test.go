package outlier_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/resolvertest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/testbackend"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/consistenthash"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/leastrequest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/outlier"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/p2cewma"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/pickfirst"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/random"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/weighted"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/internal/clock"
)

func TestMain(m *testing.M) { resolvertest.VerifyTestMain(m) }

// policies are the policies ejection is checked under: grpc-go's
// round_robin and every policy of this module. Consistent hashing is
// given no key here (each call goes to a random instance, as its
// missing_key SPREAD says); runtime/lb's tests give it keys.
var policies = []string{"round_robin", random.Name, p2cewma.Name, leastrequest.Name, weighted.Name, consistenthash.Name, pickfirst.Name}

// fakeClock replaces the package's clock for the test.
func fakeClock(t *testing.T) *clock.Fake {
	c := clock.NewFake(time.Unix(1_700_000_000, 0))
	t.Cleanup(outlier.SetClock(c))
	return c
}

// dial connects to the backends through lb_outlier (its config's fields
// given in cfg, "" for the defaults) over policy, with client-side health
// checking of EchoService, and waits until every backend (one, under
// pick_first) has answered a call.
func dial(t *testing.T, policy, cfg string, bs []*testbackend.Backend) *grpc.ClientConn {
	return dialChild(t, policy, "{}", cfg, bs)
}

// dialChild is dial with the child policy's config.
func dialChild(t *testing.T, policy, childCfg, cfg string, bs []*testbackend.Backend) *grpc.ClientConn {
	t.Helper()
	r := manual.NewBuilderWithScheme("outliertest")
	var eps []resolver.Endpoint
	for _, b := range bs {
		eps = append(eps, resolver.Endpoint{Addresses: []resolver.Address{{Addr: b.Addr}}})
	}
	r.InitialState(resolver.State{Endpoints: eps})
	if cfg != "" {
		cfg += ","
	}
	sc := fmt.Sprintf(`{"loadBalancingConfig":[{"lb_outlier":{%s"childPolicy":[{%q:%s}]}}],"healthCheckConfig":{"serviceName":%q}}`, cfg, policy, childCfg, testbackend.EchoService)
	cc, err := grpc.NewClient(r.Scheme()+":///outlier", grpc.WithResolvers(r), grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDefaultServiceConfig(sc))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	want := len(bs)
	if policy == pickfirst.Name {
		want = 1
	}
	deadline := time.Now().Add(resolvertest.Timeout)
	for {
		seen := 0
		for _, b := range bs {
			if b.Echoes.Load() > 0 {
				seen++
			}
		}
		if seen >= want {
			return cc
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d backends answered within %v", seen, want, resolvertest.Timeout)
		}
		echo(cc) //nolint:errcheck // waiting for the connections
	}
}

// echo makes one call.
func echo(cc *grpc.ClientConn) error {
	ctx, cancel := context.WithTimeout(context.Background(), resolvertest.Timeout)
	defer cancel()
	return testbackend.Echo(ctx, cc, "Call", &wrapperspb.StringValue{})
}

// run makes n calls from callers goroutines and returns how many failed,
// by code.
func run(t *testing.T, cc *grpc.ClientConn, callers, n int) map[codes.Code]int {
	t.Helper()
	var mu sync.Mutex
	failed := map[codes.Code]int{}
	var wg sync.WaitGroup
	var left atomic.Int64
	left.Store(int64(n))
	for range callers {
		wg.Go(func() {
			for left.Add(-1) >= 0 {
				if err := echo(cc); err != nil {
					mu.Lock()
					failed[status.Code(err)]++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return failed
}

func sum(m map[codes.Code]int) (n int) {
	for _, v := range m {
		n += v
	}
	return n
}

// bad is the backend a test turns bad: under pick_first the one that took
// the calls, else the first.
func bad(policy string, bs []*testbackend.Backend) *testbackend.Backend {
	if policy == pickfirst.Name {
		for _, b := range bs {
			if b.Echoes.Load() > 0 {
				return b
			}
		}
	}
	return bs[0]
}

// waitBack makes calls until b answers one again, and returns how long
// that took; it fails the test after resolvertest.Timeout.
func waitBack(t *testing.T, cc *grpc.ClientConn, b *testbackend.Backend) time.Duration {
	t.Helper()
	start, before := time.Now(), b.Echoes.Load()
	for b.Echoes.Load() == before {
		if time.Since(start) > resolvertest.Timeout {
			t.Fatalf("%s got no call within %v", b.Addr, resolvertest.Timeout)
		}
		echo(cc) //nolint:errcheck // only where the calls go matters
	}
	return time.Since(start)
}

// TestConsecutiveFailures: of 10 backends, one fails every call with
// UNAVAILABLE while its health stays SERVING. Under every policy it costs
// at most the 5 failures that eject it plus the calls in flight on it at
// that moment; while it is out it gets no call; once its ejection time is
// over (the fake clock moves past it) it is back within a second, on the
// connection it had. Without
// ejection round_robin fails a tenth of the calls.
func TestConsecutiveFailures(t *testing.T) {
	const callers, calls = 4, 2000
	for _, policy := range policies {
		t.Run(policy, func(t *testing.T) {
			c := fakeClock(t)
			bs, _ := testbackend.StartN(t, 10)
			childCfg := "{}"
			if policy == p2cewma.Name {
				// p2c_ewma shuns a failing instance on its own, before 5
				// failures eject it, and then probes it every 3 s (on the
				// real clock): without probes, the count is exact.
				childCfg = `{"probe":"1h"}`
			}
			cc := dialChild(t, policy, childCfg, "", bs)
			b := bad(policy, bs)
			conns := b.Conns.Load()
			b.Fail.Store(true)
			failed := run(t, cc, callers, calls)
			t.Logf("%s: %d of %d calls failed (%v)", policy, sum(failed), calls, failed)
			if n := sum(failed); n > outlier.DefaultConsecutiveFailures+callers {
				t.Errorf("%d calls failed, want at most %d (the run that ejects, and the calls in flight)", n, outlier.DefaultConsecutiveFailures+callers)
			}
			before := b.Echoes.Load()
			if failed := run(t, cc, callers, 500); sum(failed) != 0 {
				t.Errorf("while it is out: %v calls failed, want none", failed)
			}
			if got := b.Echoes.Load() - before; got != 0 {
				t.Errorf("the ejected backend got %d of 500 calls, want none", got)
			}
			switch policy {
			case pickfirst.Name:
				return // pick_first stays on the instance it moved to
			case p2cewma.Name:
				return // without probes p2c_ewma never tries it again
			}
			b.Fail.Store(false)
			c.Advance(outlier.DefaultBaseEjectionTime * 11 / 10) // the longest first ejection, jitter included
			if took := waitBack(t, cc, b); took > time.Second {
				t.Errorf("the backend took %v after its ejection ended to get a call, want at most 1s", took)
			}
			if got := b.Conns.Load(); got != conns {
				t.Errorf("the backend accepted %d connections while out and back, want none: ejection keeps the connection", got-conns)
			}
		})
	}
	t.Run("round_robin without ejection", func(t *testing.T) {
		bs, _ := testbackend.StartN(t, 10)
		r := manual.NewBuilderWithScheme("plain")
		var eps []resolver.Endpoint
		for _, b := range bs {
			eps = append(eps, resolver.Endpoint{Addresses: []resolver.Address{{Addr: b.Addr}}})
		}
		r.InitialState(resolver.State{Endpoints: eps})
		cc, err := grpc.NewClient(r.Scheme()+":///plain", grpc.WithResolvers(r), grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		bs[0].Fail.Store(true)
		failed := sum(run(t, cc, callers, calls))
		t.Logf("without ejection %d of %d calls failed", failed, calls)
		if failed < calls/20 {
			t.Errorf("without ejection %d of %d calls failed, want about a tenth: the test would not see ejection work", failed, calls)
		}
	})
}

// TestFailurePercentage: a backend failing 30% of its calls with INTERNAL
// is ejected by the failure-percentage mode at the end of the interval
// (the consecutive mode is off); one failing every call with
// INVALID_ARGUMENT, the caller's error, is never ejected.
func TestFailurePercentage(t *testing.T) {
	c := fakeClock(t)
	bs, _ := testbackend.StartN(t, 10)
	cc := dial(t, "round_robin", `"consecutiveFailures":-1,"failurePercentage":{"threshold":20,"minimumRequests":20}`, bs)
	gray, callers := bs[0], bs[1]
	gray.FailCode.Store(uint32(codes.Internal))
	gray.FailPercent.Store(30)
	callers.FailCode.Store(uint32(codes.InvalidArgument))
	callers.FailPercent.Store(100)
	failed := run(t, cc, 4, 1000)
	t.Logf("first interval: %v", failed)
	if failed[codes.Internal] == 0 || failed[codes.InvalidArgument] == 0 {
		t.Fatalf("failed calls %v: want INTERNAL and INVALID_ARGUMENT ones", failed)
	}
	c.Advance(outlier.DefaultInterval)
	waitOut(t, cc, gray)
	before := callers.Echoes.Load()
	run(t, cc, 4, 900)
	if got := callers.Echoes.Load() - before; got < 50 {
		t.Errorf("the backend failing INVALID_ARGUMENT got %d of 900 calls, want its share (100): it must not be ejected", got)
	}
}

// waitOut makes calls until b gets none of 200 in a row; it fails the test
// after resolvertest.Timeout.
func waitOut(t *testing.T, cc *grpc.ClientConn, b *testbackend.Backend) {
	t.Helper()
	deadline := time.Now().Add(resolvertest.Timeout)
	for {
		before := b.Echoes.Load()
		run(t, cc, 1, 200)
		if b.Echoes.Load() == before {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still gets calls %v after it should be out", b.Addr, resolvertest.Timeout)
		}
	}
}

// TestThreeBackends: with 3 backends, one failing is ejected (10% of 3 is
// less than one, and at least one may be out); gRFC A50's defaults need 5.
func TestThreeBackends(t *testing.T) {
	fakeClock(t)
	bs, _ := testbackend.StartN(t, 3)
	cc := dial(t, "round_robin", "", bs)
	bs[2].Fail.Store(true)
	failed := sum(run(t, cc, 2, 300))
	if failed > outlier.DefaultConsecutiveFailures+2 {
		t.Errorf("%d calls failed, want at most %d", failed, outlier.DefaultConsecutiveFailures+2)
	}
	waitOut(t, cc, bs[2])
}

// TestEveryBackendFailing: with all 10 backends failing, at most 10% (one)
// is out at a time and every call still goes to a backend, which answers
// it with its failure.
func TestEveryBackendFailing(t *testing.T) {
	fakeClock(t)
	bs, _ := testbackend.StartN(t, 10)
	cc := dial(t, "round_robin", "", bs)
	for _, b := range bs {
		b.Fail.Store(true)
	}
	total := func() (n int64) {
		for _, b := range bs {
			n += b.Echoes.Load()
		}
		return n
	}
	before := total()
	failed := run(t, cc, 4, 2000)
	if got := total() - before; got != 2000 {
		t.Errorf("backends got %d of 2000 calls, want all: a call failed without going out (%v)", got, failed)
	}
	var last []int64
	for _, b := range bs {
		last = append(last, b.Echoes.Load())
	}
	run(t, cc, 4, 1000)
	idle := 0
	for i, b := range bs {
		if b.Echoes.Load() == last[i] {
			idle++
		}
	}
	if idle > 1 {
		t.Errorf("%d of 10 backends got none of 1,000 calls: more than the 10%% allowed out", idle)
	}
}

// TestEjectionGrows: an instance that fails again right after it is back
// goes out for twice as long.
func TestEjectionGrows(t *testing.T) {
	c := fakeClock(t)
	bs, _ := testbackend.StartN(t, 5)
	cc := dial(t, "round_robin", `"baseEjectionTime":"10s","interval":"1h"`, bs)
	b := bs[0]
	b.Fail.Store(true)
	run(t, cc, 2, 100)
	waitOut(t, cc, b)
	c.Advance(11 * time.Second) // the first ejection: 9-11 s
	waitBack(t, cc, b)
	run(t, cc, 2, 100) // it still fails: out again, for 18-22 s
	waitOut(t, cc, b)
	b.Fail.Store(false)
	c.Advance(11 * time.Second)
	before := b.Echoes.Load()
	run(t, cc, 2, 200)
	if got := b.Echoes.Load() - before; got != 0 {
		t.Errorf("11 s into its second ejection the backend got %d calls, want none", got)
	}
	c.Advance(11 * time.Second)
	waitBack(t, cc, b)
}

// TestEjectionAndHealth: an instance ejected and then NOT_SERVING stays out
// when its ejection ends, until its health says SERVING: the health check
// and the ejection each keep it out.
func TestEjectionAndHealth(t *testing.T) {
	c := fakeClock(t)
	health := outlier.TrackHealth(t)
	bs, _ := testbackend.StartN(t, 4)
	cc := dial(t, "round_robin", "", bs)
	b := bs[0]
	b.Fail.Store(true)
	run(t, cc, 2, 100)
	waitOut(t, cc, b)
	b.SetServing(false)
	b.Fail.Store(false)
	// Once the client has heard: its health check says so to the
	// balancer, which keeps it from the policy while the ejection lasts.
	deadline := time.Now().Add(resolvertest.Timeout)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for s := health(b.Addr); len(s) == 0 || s[len(s)-1] != connectivity.TransientFailure; s = health(b.Addr) {
		if time.Now().After(deadline) {
			t.Fatalf("the client's health check of %s reported %v, not NOT_SERVING, within %v", b.Addr, s, resolvertest.Timeout)
		}
		<-tick.C
	}
	c.Advance(outlier.DefaultBaseEjectionTime * 11 / 10)
	before := b.Echoes.Load()
	if failed := run(t, cc, 2, 300); len(failed) != 0 {
		t.Errorf("calls failed: %v", failed)
	}
	if got := b.Echoes.Load() - before; got != 0 {
		t.Errorf("the NOT_SERVING backend got %d calls once its ejection ended, want none", got)
	}
	b.SetServing(true)
	waitBack(t, cc, b)
}

// TestConfigErrors: a config out of range is refused, naming the setting.
func TestConfigErrors(t *testing.T) {
	for js, want := range map[string]string{
		`{"consecutiveFailures":-1,"disableFailurePercentage":true,"childPolicy":[{"round_robin":{}}]}`: "nothing would eject",
		`{"disableFailurePercentage":true,"failurePercentage":{},"childPolicy":[{"round_robin":{}}]}`:   "with the mode disabled",
		`{"maxEjectedPercent":101,"childPolicy":[{"round_robin":{}}]}`:                                  "max ejected percent 101",
		`{"interval":"soon","childPolicy":[{"round_robin":{}}]}`:                                        `interval "soon"`,
		`{"failureCodes":["OK"],"childPolicy":[{"round_robin":{}}]}`:                                    "failure code OK",
		`{"failurePercentage":{"threshold":120},"childPolicy":[{"round_robin":{}}]}`:                    "threshold 120",
		`{"childPolicy":[{"no_such_policy":{}}]}`:                                                       "no registered policy",
		`{"failureCodes":["UNAVAILABLE","NOT_A_CODE"],"childPolicy":[{"round_robin":{}}]}`:              "NOT_A_CODE",
	} {
		_, err := outlier.ParseConfig([]byte(js))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseConfig(%s) = %v, want an error with %q", js, err, want)
		}
	}
}

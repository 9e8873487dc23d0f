package p2cewma_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/resolvertest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/testbackend"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/p2cewma"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/static"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/lb"
)

func TestMain(m *testing.M) { resolvertest.VerifyTestMain(m) }

// TestSlowBackend: 5 backends, one 100 ms slower, 2 callers through
// lb.Dial with P2CEWMA: the slow one gets at most a tenth of what the fast
// ones get on average in the same run (a policy that did not tell them
// apart would give it as much); once fast again it gets its share back.
//
// 100 ms, where TestAvoidsTheSlowEndpoint's fake clock has 20: on a busy
// machine a fast call stalls for tens of ms now and then, the stall
// replaces that backend's average (peak EWMA), and a backend only 20 ms
// slower rightly takes some calls meanwhile (2.3% to 9.5% of them beside
// two busy loops, under 2% on an idle machine). 100 ms slower, it gets its
// probes and hardly more (0 to 3 of 4,000 calls beside two busy loops).
func TestSlowBackend(t *testing.T) {
	bs, addrs := testbackend.StartN(t, 5)
	slow := bs[4]
	slow.Delay.Store(int64(100 * time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), resolvertest.Timeout)
	defer cancel()
	c, err := lb.Dial(ctx, &lb.Service{Discovery: static.Config{Addresses: addrs}, Balancer: lb.P2CEWMA{}}, lb.WithInsecure(), lb.WithBlock())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// 2 callers: one per core; more only queue on this machine's CPUs.
	// The first calls find every backend unmeasured (each starts neutral):
	// the count starts once the slow one has been measured.
	testbackend.Share(t, c, 2, 200, bs, slow)
	got := calls(t, c, 4000, bs)
	t.Logf("calls per backend of 4,000, the last 100 ms slower: %v", got)
	if fast := mean(got[:4]); float64(got[4]) > fast/10 {
		t.Errorf("the slow backend got %d calls, the fast ones %v: want at most a tenth of their mean", got[4], got[:4])
	}
	// Fast again: its next probe, at most DefaultProbe later, replaces its
	// average, and it gets about as many calls as the others (at least
	// half their mean, in batches of 200 calls). On a busy machine that
	// probe may stall, and the one after it does: two probes at most.
	slow.Delay.Store(0)
	start := time.Now()
	for {
		got := calls(t, c, 200, bs)
		if float64(got[4]) >= mean(got[:4])/2 {
			took := time.Since(start)
			t.Logf("share back (%v of 200 calls) %v after it was fast again", got, took)
			if limit := 2 * p2cewma.DefaultProbe; took > limit {
				t.Errorf("the backend got its share back %v after it was fast again, want within two probes (%v)", took, limit)
			}
			break
		}
		if time.Since(start) > resolvertest.Timeout {
			t.Fatalf("the backend is fast again but gets only %v of the calls", got)
		}
	}
}

// calls makes n calls through conn from 2 callers and returns how many
// each backend of bs answered.
func calls(t *testing.T, conn grpc.ClientConnInterface, n int, bs []*testbackend.Backend) []int64 {
	t.Helper()
	before := make([]int64, len(bs))
	for i, b := range bs {
		before[i] = b.Calls.Load()
	}
	testbackend.Share(t, conn, 2, n, bs, bs[0])
	got := make([]int64, len(bs))
	for i, b := range bs {
		got[i] = b.Calls.Load() - before[i]
	}
	return got
}

func mean(ns []int64) float64 {
	var sum int64
	for _, n := range ns {
		sum += n
	}
	return float64(sum) / float64(len(ns))
}

// TestUpdatesKeepWhatWasLearned: a resolver update (an instance joining or
// leaving, a re-resolution) rebuilds the picker but keeps what each
// endpoint's calls taught it, so a backend measured slow gets no calls
// because others came and went. (go-zero's p2c_ewma builds its picker
// anew on every update and forgets: bench's -tail.churn.) Probes are off
// (1 h), so every call the slow backend gets after the warm-up is one
// that forgot.
func TestUpdatesKeepWhatWasLearned(t *testing.T) {
	bs, addrs := testbackend.StartN(t, 6) // the sixth joins and leaves
	slow := bs[4]
	// So slow that a fast backend's score (a stall replaces its average,
	// times its calls in flight plus one) never comes near, even on a
	// loaded machine: the slow one is picked only if its score is lost.
	// At 200 ms it was not: a 100 ms stall with a second call in flight
	// is enough, and beside two busy loops and two other packages' tests
	// the slow one got 1 or 2 calls in 2 of 3 runs (a picker that forgets
	// gives it 2 an update, 20).
	slow.Delay.Store(int64(time.Second))
	first := func(n int) resolver.State {
		var s resolver.State
		for _, a := range addrs[:n] {
			s.Endpoints = append(s.Endpoints, resolver.Endpoint{Addresses: []resolver.Address{{Addr: a}}})
		}
		return s
	}
	r := manual.NewBuilderWithScheme("churn")
	r.InitialState(first(5))
	conn, err := grpc.NewClient("churn:///backends", grpc.WithResolvers(r),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"lb_p2c_ewma":{"probe":"1h"}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Each endpoint starts neutral: calls until the slow one has had one
	// (and so a sample: its first call is timed).
	deadline := time.Now().Add(resolvertest.Timeout)
	for slow.Calls.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the slow backend got no call")
		}
		testbackend.Share(t, conn, 2, 20, bs, slow)
	}
	before := slow.Calls.Load()
	for i := range 10 {
		r.UpdateState(first(5 + (i+1)%2)) // six, five, six, ...
		testbackend.Share(t, conn, 2, 100, bs, slow)
	}
	if got := slow.Calls.Load() - before; got != 0 {
		t.Errorf("after 10 updates with 100 calls each, the slow backend got %d calls, want 0: the picker forgot its latency", got)
	}
	if bs[5].Calls.Load() == 0 {
		t.Error("the sixth backend got no call while it was in the list")
	}
}

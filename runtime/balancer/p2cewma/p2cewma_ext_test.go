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
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/static"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/lb"
)

func TestMain(m *testing.M) { resolvertest.VerifyTestMain(m) }

// TestSlowBackend: 5 backends, one 20 ms slower, 2 callers through
// lb.Dial with P2CEWMA: the slow one gets at most 2% of the calls; once
// fast again it gets its share back.
func TestSlowBackend(t *testing.T) {
	bs, addrs := testbackend.StartN(t, 5)
	slow := bs[4]
	slow.Delay.Store(int64(20 * time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), resolvertest.Timeout)
	defer cancel()
	c, err := lb.Dial(ctx, &lb.Service{Discovery: static.Config{Addresses: addrs}, Balancer: lb.P2CEWMA{}}, lb.WithInsecure(), lb.WithBlock())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// 2 callers: one per core; more only queue on this machine's CPUs.
	// The first calls find every backend unmeasured (each starts neutral):
	// the share counts once the slow one has been measured.
	testbackend.Share(t, c, 2, 200, bs, slow)
	share := testbackend.Share(t, c, 2, 4000, bs, slow)
	t.Logf("slow backend (+20 ms): %.2f%% of 4,000 calls", 100*share)
	if share > 0.02 {
		t.Errorf("the slow backend got %.2f%% of the calls, want at most 2%%", 100*share)
	}
	// Fast again: within 5 s it gets about its 20% share back (its next
	// probe, at most DefaultProbe later, replaces its average). Batches of
	// 200 calls tell when.
	slow.Delay.Store(0)
	fast := time.Now()
	for {
		got := testbackend.Share(t, c, 2, 200, bs, slow)
		if got >= 0.12 {
			took := time.Since(fast)
			t.Logf("share back (%.0f%% of 200 calls) %v after it was fast again", 100*got, took)
			if took > 5*time.Second {
				t.Errorf("the backend got its share back %v after it was fast again, want within 5s", took)
			}
			break
		}
		if time.Since(fast) > resolvertest.Timeout {
			t.Fatalf("the backend is fast again but gets only %.1f%% of the calls", 100*got)
		}
	}
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
	slow.Delay.Store(int64(200 * time.Millisecond))
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

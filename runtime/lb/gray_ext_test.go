package lb_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/resolvertest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/testbackend"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/outlier"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/static"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/lb"
)

// grayCalls makes n Echo calls through c from callers goroutines, each
// with its own key ("k0", "k1", ...: consistent hashing spreads them), and
// returns how many failed.
func grayCalls(t *testing.T, c grpc.ClientConnInterface, callers, n int) int {
	t.Helper()
	var failed, next atomic.Int64
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), resolvertest.Timeout)
				if err := testbackend.Echo(ctx, c, "Echo", wrapperspb.String(fmt.Sprintf("k%d", i))); err != nil {
					failed.Add(1)
				}
				cancel()
			}
		})
	}
	wg.Wait()
	return int(failed.Load())
}

// TestEjectionUnderEveryPolicy: through lb.Dial with OutlierEjection's
// defaults, under every policy (hashing ones with a key on each call, and
// a pool of 3 connections per backend), one backend of 5 failing every
// call while its health stays SERVING costs at most the 5 failures that
// eject it plus the calls in flight, then gets no calls: its keys go to
// the others.
func TestEjectionUnderEveryPolicy(t *testing.T) {
	const callers = 4
	all := append(policies[:len(policies):len(policies)], struct {
		name string
		b    lb.Balancer
		pool int
	}{"pick_first", lb.PickFirst{}, 0})
	for _, p := range all {
		t.Run(p.name, func(t *testing.T) {
			bs, addrs := testbackend.StartN(t, 5)
			ctx, cancel := context.WithTimeout(context.Background(), resolvertest.Timeout)
			defer cancel()
			svc := &lb.Service{
				FullName:        testbackend.EchoService,
				Discovery:       static.Config{Addresses: addrs},
				Balancer:        p.b,
				PoolSize:        p.pool,
				OutlierEjection: &lb.OutlierEjection{},
				Methods:         []lb.Method{{Name: "Echo", HashKey: "value"}},
			}
			c, err := lb.Dial(ctx, svc, lb.WithInsecure(), lb.WithBlock())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if failed := grayCalls(t, c, callers, 200); failed != 0 {
				t.Fatalf("%d of 200 calls failed with every backend well", failed)
			}
			bad := bs[0]
			for _, b := range bs { // pick_first: the backend it uses
				if b.Echoes.Load() > bad.Echoes.Load() {
					bad = b
				}
			}
			bad.Fail.Store(true)
			failed := grayCalls(t, c, callers, 1000)
			t.Logf("%s: %d of 1,000 calls failed", p.name, failed)
			if failed > outlier.DefaultConsecutiveFailures+callers {
				t.Errorf("%d of 1,000 calls failed, want at most %d", failed, outlier.DefaultConsecutiveFailures+callers)
			}
			before := bad.Echoes.Load()
			if failed := grayCalls(t, c, callers, 500); failed != 0 {
				t.Errorf("%d of 500 calls failed while the bad backend was out", failed)
			}
			if got := bad.Echoes.Load() - before; got != 0 {
				t.Errorf("the ejected backend got %d of 500 calls", got)
			}
		})
	}
}

// TestEjectionCountsEachHedge: with hedging, each attempt counts for the
// instance it went to: a backend that fails every call is ejected though
// the calls it fails are won by the hedges sent elsewhere.
func TestEjectionCountsEachHedge(t *testing.T) {
	bs, addrs := testbackend.StartN(t, 4)
	ctx, cancel := context.WithTimeout(context.Background(), resolvertest.Timeout)
	defer cancel()
	svc := &lb.Service{
		FullName:        testbackend.EchoService,
		Discovery:       static.Config{Addresses: addrs},
		OutlierEjection: &lb.OutlierEjection{},
		Methods:         []lb.Method{{Name: "Echo", Idempotent: true, Hedging: &lb.Hedging{MaxAttempts: 2, Delay: 5 * time.Millisecond}}},
	}
	c, err := lb.Dial(ctx, svc, lb.WithInsecure(), lb.WithBlock())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	grayCalls(t, c, 2, 100)
	bad := bs[0]
	bad.Fail.Store(true)
	grayCalls(t, c, 2, 400)
	before := bad.Echoes.Load()
	grayCalls(t, c, 2, 400)
	if got := bad.Echoes.Load() - before; got != 0 {
		t.Errorf("the failing backend got %d of 400 calls' attempts after 400 calls: not ejected", got)
	}
}

// TestLivePageShowsEjection: the live page names the client's policy with
// its layers, and shows an ejected instance as "ejected until ...".
func TestLivePageShowsEjection(t *testing.T) {
	bs, addrs := testbackend.StartN(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), resolvertest.Timeout)
	defer cancel()
	svc := &lb.Service{FullName: testbackend.EchoService, Name: "debugejection", Discovery: static.Config{}, OutlierEjection: &lb.OutlierEjection{}}
	target := "static:///" + strings.Join(addrs, ",")
	c, err := lb.Dial(ctx, svc, lb.WithInsecure(), lb.WithBlock(), lb.WithTarget(target))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	bs[1].Fail.Store(true)
	grayCalls(t, c, 2, 200)
	srv := httptest.NewServer(lb.DebugHandler())
	defer srv.Close()
	client := clientOf(t, getDebugJSON(t, srv.URL+"/?format=json"), target)
	if want := "lb_outlier > round_robin"; client.Policy != want {
		t.Errorf("policy = %q, want %q", client.Policy, want)
	}
	for _, in := range client.Instances {
		ejected := strings.HasPrefix(in.Policy, "ejected until ")
		if ejected != (in.Address == bs[1].Addr) {
			t.Errorf("instance %s: policy column %q; the failing one is %s", in.Address, in.Policy, bs[1].Addr)
		}
	}
	if page := getDebug(t, srv.URL+"/"); !strings.Contains(page, "ejected until ") {
		t.Error("the page shows no ejection")
	}
}

// TestOutlierMetrics: an ejection is counted by mode, its length recorded,
// and the instances out now reported, through lb.WithMetrics.
func TestOutlierMetrics(t *testing.T) {
	bs, addrs := testbackend.StartN(t, 3)
	reader, mp := newMeterProvider(t)
	svc := &lb.Service{FullName: testbackend.EchoService, Discovery: static.Config{Addresses: addrs}, OutlierEjection: &lb.OutlierEjection{}}
	ctx, cancel := context.WithTimeout(context.Background(), resolvertest.Timeout)
	defer cancel()
	c, err := lb.Dial(ctx, svc, lb.WithInsecure(), lb.WithBlock(), lb.WithMetrics(mp))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	bs[0].Fail.Store(true)
	grayCalls(t, c, 2, 200)
	m := collect(t, reader)
	if got := m.byLabel("lb.outlier.ejections", "lb.outlier.mode"); got[outlier.ModeConsecutive] != 1 || len(got) != 1 {
		t.Errorf("lb.outlier.ejections by mode = %v, want one %s", got, outlier.ModeConsecutive)
	}
	if got := m.sum("lb.outlier.ejection_time"); got != 1 {
		t.Errorf("lb.outlier.ejection_time has %v samples, want 1", got)
	}
	if got := m.sum("lb.outlier.ejected"); got != 1 {
		t.Errorf("lb.outlier.ejected = %v, want 1", got)
	}
	m.checkLabels(t, "")
}

package etcd_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/etcd"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/lb"
)

// etcdWatchers reads the embedded etcd's own count of watchers.
func etcdWatchers(t *testing.T) float64 {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "etcd_debugging_mvcc_watcher_total" {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("etcd exports no etcd_debugging_mvcc_watcher_total")
	return 0
}

func check(ctx context.Context, conn grpc.ClientConnInterface, opts ...grpc.CallOption) error {
	_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, opts...)
	return err
}

// TestOneWatchPerProcess: 100 plain grpc.NewClient channels and a generated
// client's pool of 16 connections, all resolving one service, hold one etcd
// connection and one etcd watch between them, counted by the etcd server and
// by a proxy in front of it.
func TestOneWatchPerProcess(t *testing.T) {
	s := startEtcd(t)
	p := startProxy(t, s.Endpoint())
	for _, id := range []string{"a", "b"} {
		startBackend(t, s.Endpoint(), "shared", id)
	}
	before := etcdWatchers(t)
	ctx := ctxT(t)

	var conns []grpc.ClientConnInterface
	for range 100 {
		cc, err := grpc.NewClient("etcd://"+p.Addr()+"/services/shared", grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		conns = append(conns, cc)
	}
	pool, err := lb.Dial(ctx, &lb.Service{Name: "shared", Discovery: etcd.Config{Endpoints: []string{p.Addr()}}, PoolSize: 16}, lb.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pool.Close() })
	conns = append(conns, pool.Conn())
	for i, cc := range conns {
		if err := check(ctx, cc, grpc.WaitForReady(true)); err != nil {
			t.Fatalf("call on channel %d: %v", i, err)
		}
	}

	var shared *discovery.WatchInfo
	for _, w := range discovery.Watches() {
		if w.Key.Scheme == etcd.Scheme && w.Key.Service == "/services/shared" {
			if shared != nil {
				t.Fatalf("two watches of one service: %+v and %+v", *shared, w)
			}
			shared = &w
		}
	}
	if shared == nil || shared.Subscribers != 101 || shared.Instances != 2 {
		t.Fatalf("watch of the service: %+v, want one with 101 subscribers (100 channels and one pool) and 2 instances", shared)
	}
	if n := p.Accepted(); n != 1 {
		t.Errorf("101 channels opened %d etcd connections, want 1", n)
	}
	if n := etcdWatchers(t) - before; n != 1 {
		t.Errorf("101 channels hold %v etcd watchers, want 1", n)
	}
	t.Logf("101 channels: %d etcd connection, %v watcher", p.Accepted(), etcdWatchers(t)-before)
}

// TestIdleChannelAndRegistryDown: a channel that went idle (its resolver
// closed) while etcd became unreachable builds its resolver again from the
// shared last good state, and its call succeeds. A service never seen
// fails fast with UNAVAILABLE instead of hanging.
func TestIdleChannelAndRegistryDown(t *testing.T) {
	s := startEtcd(t)
	p := startProxy(t, s.Endpoint())
	startBackend(t, s.Endpoint(), "idle", "a")
	ctx := ctxT(t)

	cc, err := grpc.NewClient("etcd://"+p.Addr()+"/services/idle",
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithIdleTimeout(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if err := check(ctx, cc, grpc.WaitForReady(true)); err != nil {
		t.Fatal(err)
	}
	for st := cc.GetState(); st != connectivity.Idle; st = cc.GetState() {
		if !cc.WaitForStateChange(ctx, st) {
			t.Fatalf("channel not idle (state %v): %v", st, ctx.Err())
		}
	}
	p.Cut()
	start := time.Now()
	if err := check(ctx, cc); err != nil {
		t.Fatalf("call after idle with etcd unreachable: %v, want it served from the last good state", err)
	}
	t.Logf("call out of idle with etcd unreachable: %v", time.Since(start))

	// Idle for longer than the watch lingers (grpc-go's default idle
	// timeout is 30 minutes): the watch stops, its last good set stays.
	for st := cc.GetState(); st != connectivity.Idle; st = cc.GetState() {
		if !cc.WaitForStateChange(ctx, st) {
			t.Fatalf("channel not idle again (state %v): %v", st, ctx.Err())
		}
	}
	discovery.CloseIdleWatches()
	if err := check(ctx, cc); err != nil {
		t.Fatalf("call after the watch stopped, etcd unreachable: %v, want the last good state", err)
	}

	// Never seen, registry unreachable: UNAVAILABLE, within the request
	// deadline plus the channel's own work.
	never, err := grpc.NewClient("etcd://"+p.Addr()+"/services/never", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer never.Close()
	start = time.Now()
	cctx, cancel := context.WithTimeout(ctx, etcd.RequestTimeout+10*time.Second)
	defer cancel()
	err = check(cctx, never)
	if status.Code(err) != codes.Unavailable || errors.Is(cctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("call with no state ever seen: %v (after %v), want UNAVAILABLE before the deadline", err, time.Since(start))
	}
	t.Logf("no state ever seen: %v after %v", status.Code(err), time.Since(start))
}

// TestUnreachableWhileWatching: etcd becoming unreachable under a running
// watch (the client would reconnect quietly forever) is noticed, and the
// failure policy applies: with fail fast, calls fail.
func TestUnreachableWhileWatching(t *testing.T) {
	s := startEtcd(t)
	p := startProxy(t, s.Endpoint())
	register(t, etcd.Config{}, s.Endpoint(), "cut", "a", "10.0.0.1:1")
	cc := buildResolver(t, "etcd://"+p.Addr()+"/services/cut?onfailure=failfast")
	cc.WaitAddrs(t, "10.0.0.1:1")
	cut := time.Now()
	p.Cut()
	cc.WaitAddrs(t)
	t.Logf("unreachable etcd noticed and calls failed %v after the cut", time.Since(cut))
	p.Heal()
	cc.WaitAddrs(t, "10.0.0.1:1")
}

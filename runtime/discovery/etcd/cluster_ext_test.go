package etcd_test

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/etcdserver"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/load"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/rolling"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/etcd"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/lb"
)

// TestClusterLosesItsLeader: a 3-member etcd cluster on loopback, 3
// backends registered in it and a client calling them at 200 calls a
// second. The leader member is stopped: no call fails, a 4th backend
// registered afterwards reaches the client (the resolver keeps updating),
// and the registrars keep exactly one key per instance.
func TestClusterLosesItsLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("a cluster and a leader election")
	}
	cl, err := etcdserver.StartCluster(t.TempDir(), 3)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Stop()
	svc := &lb.Service{Name: "clustered", FullName: "test.Clustered", Discovery: etcd.Config{Endpoints: cl.Endpoints()}}
	var bs []*rolling.Backend
	for range 3 {
		bs = append(bs, rolling.Start(t, svc))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*timeout)
	defer cancel()
	c, err := lb.Dial(ctx, svc, lb.WithInsecure(), lb.WithBlock())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rolling.WaitListed(ctx, t, svc.Name, 3)

	// Load: a call every 5 ms, open loop.
	l := load.StartRate(200, 5*time.Second, func(cctx context.Context) error {
		return c.Invoke(cctx, "/test.Clustered/Unary", &emptypb.Empty{}, &emptypb.Empty{})
	})
	defer l.Stop()

	leader := cl.Leader()
	if leader < 0 {
		t.Fatal("no leader")
	}
	start := time.Now()
	cl.StopMember(leader)
	// The resolver keeps updating: a 4th backend registered after the
	// leader is gone reaches the client.
	bs = append(bs, rolling.Start(t, svc))
	rolling.WaitListed(ctx, t, svc.Name, 4)
	t.Logf("a 4th backend reached the client %v after the leader stopped", time.Since(start))
	// Some more load on the cluster of two.
	select {
	case <-time.After(3 * time.Second): // the load's own duration
	case <-ctx.Done():
	}
	calls, failed, firstErr := l.Stop()
	t.Logf("%d calls, %d failed (first: %v)", calls, failed, firstErr)
	if failed != 0 {
		t.Errorf("%d of %d calls failed while the cluster lost its leader; first: %v", failed, calls, firstErr)
	}
	// Exactly one key per instance, on the members left.
	var alive []string
	for i, ep := range cl.Endpoints() {
		if i != leader {
			alive = append(alive, ep)
		}
	}
	kv, err := clientv3.New(clientv3.Config{Endpoints: alive, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	resp, err := kv.Get(ctx, etcd.DefaultPrefix+"/clustered/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if n := len(resp.Kvs); n != len(bs) {
		t.Errorf("%d keys for %d instances after the leader stopped", n, len(bs))
	}
	// Shutdown with a member down: each registrar deregisters through the
	// members left.
	for i, b := range bs {
		start := time.Now()
		if err := b.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown of backend %d: %v", i, err)
		}
		t.Logf("backend %d shut down in %v", i, time.Since(start))
	}
}

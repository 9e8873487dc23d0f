package etcd_test

import (
	"context"
	"net"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/etcd"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/lb"
)

// TestShutdownRemovesEveryService: one server with two services registered
// in a real etcd; one Shutdown deletes both keys and revokes their leases.
func TestShutdownRemovesEveryService(t *testing.T) {
	e := startEtcd(t)
	cfg := etcd.Config{Endpoints: []string{e.Endpoint()}}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	addr := lis.Addr().String()
	one := grpc.ServiceDesc{ServiceName: "test.One", HandlerType: (*any)(nil)}
	two := grpc.ServiceDesc{ServiceName: "test.Two", HandlerType: (*any)(nil)}
	ra, err := lb.Register(s, &lb.Service{Name: "one", FullName: "test.One", Discovery: cfg}, &one, struct{}{}, lb.WithAdvertiseAddress(addr))
	if err != nil {
		t.Fatal(err)
	}
	rb, err := lb.Register(s, &lb.Service{Name: "two", FullName: "test.Two", Discovery: cfg}, &two, struct{}{}, lb.WithAdvertiseAddress(addr))
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- ra.Serve(lis) }()
	ctx := ctxT(t)
	for _, r := range []*lb.Registration{ra, rb} {
		if err := r.WaitRegistered(ctx); err != nil {
			t.Fatal(err)
		}
	}
	kv := rawClient(t, e.Endpoint())
	keys := func() int64 {
		t.Helper()
		resp, err := kv.Get(ctx, "/services/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		return resp.Count
	}
	leases := func() int {
		t.Helper()
		resp, err := kv.Leases(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return len(resp.Leases)
	}
	if n, l := keys(), leases(); n != 2 || l != 2 {
		t.Fatalf("%d keys and %d leases before Shutdown, want 2 and 2", n, l)
	}
	if err := ra.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve = %v", err)
	}
	if n, l := keys(), leases(); n != 0 || l != 0 {
		t.Errorf("%d keys and %d leases after Shutdown, want none", n, l)
	}
	t.Logf("shutdown: %+v", ra.LastShutdown())
}

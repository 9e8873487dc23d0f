package consul_test

import (
	"context"
	"net"
	"os"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"google.golang.org/grpc"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/consul"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/lb"
)

// TestShutdownRemovesEveryService: one server with two services registered
// in a real Consul agent; one Shutdown removes both entries, and neither
// comes back within 3 check intervals (a blocking query on the agent's
// catalog sees no change).
func TestShutdownRemovesEveryService(t *testing.T) {
	a := startAgent(t, "")
	const interval = 200 * time.Millisecond
	cfg := consul.Config{Address: a.HTTPAddr(), CheckInterval: interval}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	addr := lis.Addr().String()
	other := grpc.ServiceDesc{ServiceName: "test.Other", HandlerType: (*any)(nil)}
	ra, err := lb.Register(s, &lb.Service{Name: "echo", FullName: "test.Echo", Discovery: cfg}, &echoDesc, struct{}{}, lb.WithAdvertiseAddress(addr))
	if err != nil {
		t.Fatal(err)
	}
	rb, err := lb.Register(s, &lb.Service{Name: "other", FullName: "test.Other", Discovery: cfg}, &other, struct{}{}, lb.WithAdvertiseAddress(addr))
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- ra.Serve(lis) }()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for _, r := range []*lb.Registration{ra, rb} {
		if err := r.WaitRegistered(ctx); err != nil {
			t.Fatal(err)
		}
	}
	c, err := api.NewClient(&api.Config{Address: a.HTTPAddr(), Token: os.Getenv("CONSUL_HTTP_TOKEN")})
	if err != nil {
		t.Fatal(err)
	}
	services := func() (map[string]*api.AgentService, uint64) {
		t.Helper()
		ss, err := c.Agent().Services()
		if err != nil {
			t.Fatal(err)
		}
		_, meta, err := c.Catalog().Services(nil)
		if err != nil {
			t.Fatal(err)
		}
		return ss, meta.LastIndex
	}
	if ss, _ := services(); len(ss) != 2 {
		t.Fatalf("agent services before Shutdown: %v, want echo and other", ss)
	}
	if err := rb.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve = %v", err)
	}
	ss, index := services()
	if len(ss) != 0 {
		t.Fatalf("agent services after Shutdown: %v, want none", ss)
	}
	// Three check intervals: a re-registration would change the catalog
	// and end this blocking query early.
	wait := 3 * interval
	start := time.Now()
	got, meta, err := c.Catalog().Services((&api.QueryOptions{WaitIndex: index, WaitTime: wait}).WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	if _, back := got["echo"]; back || meta.LastIndex != index {
		t.Errorf("the catalog changed %v after Shutdown (index %d → %d): %v", time.Since(start), index, meta.LastIndex, got)
	}
	t.Logf("shutdown: %+v", rb.LastShutdown())
}

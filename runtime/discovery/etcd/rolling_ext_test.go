package etcd_test

import (
	"context"
	"testing"
	"time"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/rolling"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/etcd"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/lb"
)

// TestRollingRestart: 3 backends registered in a real etcd, restarted one
// at a time with Shutdown under 200 unary calls a second and 4 server
// streams for 15 s: no unary call fails, and each backend takes calls
// again within 3 s of serving again.
func TestRollingRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("15 s of load")
	}
	e := startEtcd(t)
	svc := &lb.Service{Name: "rolling", FullName: "test.Rolling", Discovery: etcd.Config{Endpoints: []string{e.Endpoint()}}}
	var bs []*rolling.Backend
	for range 3 {
		bs = append(bs, rolling.Start(t, svc))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*timeout)
	defer cancel()
	c, err := lb.Dial(ctx, svc, lb.WithInsecure(), lb.WithBlock())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rolling.Check(t, rolling.Restart(ctx, t, c, bs, 200, 4, 15*time.Second))
}

package consul_test

import (
	"context"
	"testing"
	"time"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/rolling"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/consul"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/lb"
)

// TestRollingRestart: 3 backends registered in a real Consul agent,
// restarted one at a time with Shutdown under 200 unary calls a second
// and 4 server streams for 15 s: no unary call fails, and each backend
// takes calls again within 3 s of serving again.
func TestRollingRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("15 s of load")
	}
	a := startAgent(t, "")
	svc := &lb.Service{Name: "rolling", FullName: "test.Rolling", Discovery: consul.Config{Address: a.HTTPAddr(), CheckInterval: 200 * time.Millisecond}}
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

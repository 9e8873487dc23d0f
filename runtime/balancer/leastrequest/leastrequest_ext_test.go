package leastrequest_test

import (
	"context"
	"testing"
	"time"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/resolvertest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/testbackend"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/static"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/lb"
)

func TestMain(m *testing.M) { resolvertest.VerifyTestMain(m) }

// TestHeldCallsSteerNewOnes: of 3 backends, one holds each call 50 ms;
// through lb.Dial with LeastRequest, 4 callers send it far less than its
// third, because its calls in flight count against it.
func TestHeldCallsSteerNewOnes(t *testing.T) {
	bs, addrs := testbackend.StartN(t, 3)
	bs[2].Delay.Store(int64(50 * time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), resolvertest.Timeout)
	defer cancel()
	c, err := lb.Dial(ctx, &lb.Service{Discovery: static.Config{Addresses: addrs}, Balancer: lb.LeastRequest{}}, lb.WithInsecure(), lb.WithBlock())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	share := testbackend.Share(t, c, 4, 2000, bs, bs[2])
	t.Logf("backend holding calls 50 ms: %.1f%% of 2,000 calls", 100*share)
	if share > 0.10 {
		t.Errorf("the backend holding calls got %.1f%% of them, want at most 10%% (round robin: 33%%)", 100*share)
	}
}

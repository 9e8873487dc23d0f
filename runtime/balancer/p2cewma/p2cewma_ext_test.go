package p2cewma_test

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
	// Fast again: within a few seconds it gets about its 20% share.
	slow.Delay.Store(0)
	fast := time.Now()
	for {
		got := testbackend.Share(t, c, 2, 1000, bs, slow)
		if got >= 0.12 {
			t.Logf("share back (%.0f%%) %v after it was fast again", 100*got, time.Since(fast))
			break
		}
		if time.Since(fast) > resolvertest.Timeout {
			t.Fatalf("the backend is fast again but gets only %.1f%% of the calls", 100*got)
		}
	}
}

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

// TestHeldCallsSteerNewOnes: of 3 backends, one holds each call 100 ms;
// through lb.Dial with LeastRequest, 4 callers give it a call only when it
// has no more in flight than the other backend drawn, so it holds at most
// 2 of their calls at once (the caller picking has none in flight, the
// other 3 at most 3), and 2 or fewer on average over the run however busy
// the machine: about 1.3 measured, idle or beside two busy loops. Round
// robin, or a pick that ignored calls in flight, leaves most callers
// waiting on it: 3.2-3.6 measured. Its share of the calls, by contrast,
// grows with the machine's load (4-17% measured), as the fast backends'
// calls slow down and its own do not.
func TestHeldCallsSteerNewOnes(t *testing.T) {
	const hold = 100 * time.Millisecond
	bs, addrs := testbackend.StartN(t, 3)
	bs[2].Delay.Store(int64(hold))
	ctx, cancel := context.WithTimeout(context.Background(), resolvertest.Timeout)
	defer cancel()
	c, err := lb.Dial(ctx, &lb.Service{Discovery: static.Config{Addresses: addrs}, Balancer: lb.LeastRequest{}}, lb.WithInsecure(), lb.WithBlock())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	inFlight, share, held, took := testbackend.HeldInFlight(t, c, 4, 2000, bs, bs[2], hold)
	t.Logf("backend holding calls 100 ms: %d of 2,000 calls (%.1f%%) in %v, %.2f in flight on average", held, 100*share, took, inFlight)
	if inFlight > 2 {
		t.Errorf("the backend holding calls had %.2f of the 4 callers' calls in flight on average (%d calls of %v in %v), want at most 2", inFlight, held, hold, took)
	}
}

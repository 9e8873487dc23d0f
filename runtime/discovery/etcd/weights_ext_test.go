package etcd_test

import (
	"fmt"
	"math"
	"testing"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/testbackend"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/etcd"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/lb"
)

// TestRegistryWeights: instances registered in etcd with weights 1:2:3 get
// 1:2:3 of 6,000 calls (±5%) through WeightedRoundRobin; a weight changed in
// etcd applies without new connections.
func TestRegistryWeights(t *testing.T) {
	s := startEtcd(t)
	raw := rawClient(t, s.Endpoint())
	bs, _ := testbackend.StartN(t, 3)
	put := func(weights ...int) {
		for i, w := range weights {
			if _, err := raw.Put(ctxT(t), fmt.Sprintf("/services/weighted/%d", i), fmt.Sprintf(`{"Addr":%q,"Metadata":{"weight":%d}}`, bs[i].Addr, w)); err != nil {
				t.Fatal(err)
			}
		}
	}
	put(1, 2, 3)
	c, err := lb.Dial(ctxT(t), &lb.Service{Name: "weighted", Discovery: etcd.Config{Endpoints: []string{s.Endpoint()}}, Balancer: lb.WeightedRoundRobin{}}, lb.WithInsecure(), lb.WithBlock())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	shares := func() []float64 {
		var before []int64
		for _, b := range bs {
			before = append(before, b.Calls.Load())
		}
		for range 6000 {
			if err := testbackend.Call(ctxT(t), c); err != nil {
				t.Fatal(err)
			}
		}
		var out []float64
		for i, b := range bs {
			out = append(out, float64(b.Calls.Load()-before[i])/6000)
		}
		return out
	}
	// The first calls may come before every backend is ready, and a new
	// weight takes a watch event: measure until the shares are the
	// weights' (±5%), within the test's deadline.
	waitShares := func(weights ...float64) {
		t.Helper()
		total := weights[0] + weights[1] + weights[2]
		ctx := ctxT(t)
		for {
			got := shares()
			ok := true
			for i, w := range weights {
				ok = ok && math.Abs(got[i]-w/total) <= 0.05*w/total
			}
			if ok {
				t.Logf("weights %v: shares %.3f", weights, got)
				return
			}
			select {
			case <-ctx.Done():
				t.Fatalf("shares %.3f, want weights %v ±5%%", got, weights)
			default:
			}
		}
	}
	waitShares(1, 2, 3)
	var conns []int64
	for _, b := range bs {
		conns = append(conns, b.Conns.Load())
	}
	put(3, 2, 1)
	waitShares(3, 2, 1)
	for i, b := range bs {
		if n := b.Conns.Load(); n != conns[i] {
			t.Errorf("backend %d: %d connections after the weight change, want the same %d", i, n, conns[i])
		}
	}
}

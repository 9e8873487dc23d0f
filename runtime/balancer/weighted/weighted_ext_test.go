package weighted_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/etcdserver"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/resolvertest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/testbackend"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/etcd"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/lb"
)

func TestMain(m *testing.M) { resolvertest.VerifyTestMain(m) }

// TestRegistryWeights: three backends registered in a real etcd with
// weights 1, 2 and 3 get 1:2:3 of 6,000 calls within ±5%; when the
// registry changes the weights to 3, 2, 1 the shares follow without a new
// connection.
func TestRegistryWeights(t *testing.T) {
	s, err := etcdserver.Start(t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	kv, err := clientv3.New(clientv3.Config{Endpoints: []string{s.Endpoint()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	// 2 × 6,000 calls one after the other, under -race on a loaded
	// 2-core machine, take up to half a minute: the deadline only
	// bounds a test whose shares never converge.
	ctx, cancel := context.WithTimeout(context.Background(), 4*resolvertest.Timeout)
	defer cancel()
	bs, _ := testbackend.StartN(t, 3)
	put := func(weights ...int) {
		t.Helper()
		for i, b := range bs {
			v := fmt.Sprintf(`{"Addr":%q,"Metadata":{"weight":%d}}`, b.Addr, weights[i])
			if _, err := kv.Put(ctx, fmt.Sprintf("/services/weighted/%d", i), v); err != nil {
				t.Fatal(err)
			}
		}
	}
	put(1, 2, 3)
	c, err := lb.Dial(ctx, &lb.Service{Name: "weighted", Discovery: etcd.Config{Endpoints: []string{s.Endpoint()}}, Balancer: lb.WeightedRoundRobin{}}, lb.WithInsecure(), lb.WithBlock())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// shares makes 6,000 calls once all three take calls and returns
	// each backend's share.
	shares := func(want ...float64) []float64 {
		t.Helper()
		for {
			got := make([]float64, 3)
			before := make([]int64, 3)
			for i, b := range bs {
				before[i] = b.Calls.Load()
			}
			for range 6000 {
				if err := testbackend.Call(ctx, c); err != nil {
					t.Fatal(err)
				}
			}
			ok := true
			for i, b := range bs {
				got[i] = float64(b.Calls.Load()-before[i]) / 6000
				ok = ok && got[i] > want[i]*0.95 && got[i] < want[i]*1.05
			}
			if ok {
				return got
			}
			// Until every backend is READY and the weights are in, the
			// shares differ; the deadline bounds the wait.
			if ctx.Err() != nil {
				t.Fatalf("shares %.3f, want %.3f within ±5%%", got, want)
			}
		}
	}
	got := shares(1.0/6, 2.0/6, 3.0/6)
	t.Logf("weights 1:2:3: shares %.3f", got)
	conns := make([]int64, 3)
	for i, b := range bs {
		conns[i] = b.Conns.Load()
	}
	put(3, 2, 1)
	got = shares(3.0/6, 2.0/6, 1.0/6)
	t.Logf("weights 3:2:1: shares %.3f", got)
	for i, b := range bs {
		if n := b.Conns.Load(); n != conns[i] {
			t.Errorf("backend %d: %d connections after the weights changed, was %d", i, n, conns[i])
		}
	}
}

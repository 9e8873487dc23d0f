package locality_test

import (
	"fmt"
	"math"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/resolvertest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/testbackend"
	_ "github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/locality"
	_ "github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/p2cewma"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
)

func TestMain(m *testing.M) { resolvertest.VerifyTestMain(m) }

// fleet is 9 backends, 3 a zone; zones[i] and regions[i] say where
// backend i is.
type fleet struct {
	bs      []*testbackend.Backend
	zones   []string
	regions []string
}

func newFleet(t *testing.T, regions map[string]string) *fleet {
	bs, _ := testbackend.StartN(t, 9)
	f := &fleet{bs: bs}
	for i := range bs {
		z := string(rune('a' + i/3))
		f.zones, f.regions = append(f.zones, z), append(f.regions, regions[z])
	}
	return f
}

// dial connects through lb_locality as a client in zone a of region r,
// over child, with client-side health checking.
func (f *fleet) dial(t *testing.T, child string) *grpc.ClientConn {
	t.Helper()
	r := manual.NewBuilderWithScheme("locality")
	var eps []resolver.Endpoint
	for i, b := range f.bs {
		eps = append(eps, discovery.Endpoint(b.Addr, discovery.Metadata{Zone: f.zones[i], Region: f.regions[i]}))
	}
	r.InitialState(resolver.State{Endpoints: eps})
	sc := fmt.Sprintf(`{"loadBalancingConfig":[{"lb_locality":{"zone":"a","region":"r","childPolicy":[{%q:{}}]}}],"healthCheckConfig":{"serviceName":%q}}`, child, testbackend.EchoService)
	cc, err := grpc.NewClient(r.Scheme()+":///fleet", grpc.WithResolvers(r), grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDefaultServiceConfig(sc))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// shares makes n calls from 4 callers and returns each zone's share and
// each backend's count; every call must succeed.
func (f *fleet) shares(t *testing.T, cc *grpc.ClientConn, n int) (map[string]float64, []int64) {
	t.Helper()
	before := make([]int64, len(f.bs))
	for i, b := range f.bs {
		before[i] = b.Calls.Load()
	}
	testbackend.Share(t, cc, 4, n, f.bs, f.bs[0])
	zones := map[string]float64{}
	counts := make([]int64, len(f.bs))
	var sum int64
	for i, b := range f.bs {
		counts[i] = b.Calls.Load() - before[i]
		sum += counts[i]
	}
	for i := range f.bs {
		zones[f.zones[i]] += float64(counts[i]) / float64(sum)
	}
	return zones, counts
}

// waitShare calls until zone z's share of a round of calls is within 2
// points of want, and fails the test after resolvertest.Timeout. A round
// is 300 calls, 100 when want is all or nothing (a round measures when
// the share changed to within its own length).
func (f *fleet) waitShare(t *testing.T, cc *grpc.ClientConn, z string, want float64) {
	t.Helper()
	deadline := time.Now().Add(resolvertest.Timeout)
	n := 300
	if want == 0 || want == 1 {
		n = 100
	}
	for {
		got, _ := f.shares(t, cc, n)
		if math.Abs(got[z]-want) <= 0.02 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("zone %s's share %.3f, want %.3f, still after %v", z, got[z], want, resolvertest.Timeout)
		}
	}
}

// waitCalls calls until every backend but those in out has answered.
func (f *fleet) waitCalls(t *testing.T, cc *grpc.ClientConn) {
	t.Helper()
	deadline := time.Now().Add(resolvertest.Timeout)
	for {
		_, counts := f.shares(t, cc, 90)
		if counts[0] > 0 && counts[1] > 0 && counts[2] > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the local zone's backends did not all answer: %v", counts)
		}
	}
}

// TestSpillOver: 3 zones of 3, a client in zone a of region r, zones b
// and c in r too. All healthy: at least 99% of the calls stay in zone a;
// one of a NOT_SERVING: a takes 1.4 × 2/3 = 93.3% ± 2 points, the rest
// spreads over b and c; all of a down: none to a, no call fails; a back:
// local first again within a second.
func TestSpillOver(t *testing.T) {
	for _, child := range []string{"round_robin", "lb_p2c_ewma"} {
		t.Run(child, func(t *testing.T) {
			f := newFleet(t, map[string]string{"a": "r", "b": "r", "c": "r"})
			cc := f.dial(t, child)
			f.waitCalls(t, cc)
			got, counts := f.shares(t, cc, 3000)
			t.Logf("all healthy: %v %v", got, counts)
			if got["a"] < 0.99 {
				t.Errorf("all healthy: zone a took %.3f of the calls, want at least 0.99", got["a"])
			}
			f.bs[0].SetServing(false)
			f.waitShare(t, cc, "a", 1.4*2/3)
			got, counts = f.shares(t, cc, 3000)
			t.Logf("one of a down: %v %v", got, counts)
			if math.Abs(got["a"]-1.4*2/3) > 0.02 {
				t.Errorf("one of a down: zone a took %.3f, want 0.933 ± 0.02", got["a"])
			}
			if counts[3]+counts[4]+counts[5] == 0 || counts[6]+counts[7]+counts[8] == 0 {
				t.Errorf("one of a down: the spill did not reach both b and c: %v", counts)
			}
			f.bs[1].SetServing(false)
			f.bs[2].SetServing(false)
			f.waitShare(t, cc, "a", 0)
			got, counts = f.shares(t, cc, 1000)
			if got["a"] != 0 {
				t.Errorf("all of a down: zone a took %.3f, want none (%v)", got["a"], counts)
			}
			for _, b := range f.bs[:3] {
				b.SetServing(true)
			}
			start := time.Now()
			f.waitShare(t, cc, "a", 1)
			if took := time.Since(start); took > time.Second {
				t.Errorf("local first again %v after zone a recovered, want within 1s", took)
			}
		})
	}
}

// TestPanic: zone b in region r, c in region s. With zone a down and two
// of b NOT_SERVING, 4 of 9 are healthy, below the 50% threshold: locality
// is ignored and the 4 take a quarter each (without panic b's one would
// take 1.4/3 = 46.7%).
func TestPanic(t *testing.T) {
	f := newFleet(t, map[string]string{"a": "r", "b": "r", "c": "s"})
	cc := f.dial(t, "round_robin")
	f.waitCalls(t, cc)
	for _, i := range []int{0, 1, 2, 3, 4} {
		f.bs[i].SetServing(false)
	}
	f.waitShare(t, cc, "b", 0.25)
	_, counts := f.shares(t, cc, 4000)
	t.Logf("panic: %v", counts)
	for _, i := range []int{5, 6, 7, 8} {
		if share := float64(counts[i]) / 4000; math.Abs(share-0.25) > 0.03 {
			t.Errorf("panic: backend %d took %.3f of the calls, want 0.25 ± 0.03 (%v)", i, share, counts)
		}
	}
	// Two of a back: 5 of 9 healthy, no panic, zone a takes 1.4 × 2/3.
	f.bs[0].SetServing(true)
	f.bs[1].SetServing(true)
	f.waitShare(t, cc, "a", 1.4*2/3)
}

package locality

import (
	"math"
	"testing"

	"google.golang.org/grpc/balancer"
)

// TestShares: Envoy's priority load with overprovisioning 1.4 and a 50%
// panic threshold, on three zones of three.
func TestShares(t *testing.T) {
	for _, tc := range []struct {
		name         string
		total, ready [3]int
		want         [3]float64
		panicking    bool
	}{
		{"all healthy", [3]int{3, 6, 0}, [3]int{3, 6, 0}, [3]float64{1, 0, 0}, false},
		{"one local down", [3]int{3, 6, 0}, [3]int{2, 6, 0}, [3]float64{1.4 * 2 / 3, 1 - 1.4*2/3, 0}, false},
		{"all local down", [3]int{3, 6, 0}, [3]int{0, 6, 0}, [3]float64{0, 1, 0}, false},
		{"spill to the third level", [3]int{3, 3, 3}, [3]int{1, 1, 3}, [3]float64{1.4 / 3, 1.4 / 3, 1 - 2.8/3}, false},
		{"short everywhere: normalized", [3]int{4, 4, 4}, [3]int{3, 1, 2}, [3]float64{1, 0, 0}, false},
		{"below the threshold: panic", [3]int{3, 3, 3}, [3]int{0, 1, 3}, [3]float64{0, 0.25, 0.75}, true},
		{"nothing healthy: by size", [3]int{3, 6, 0}, [3]int{0, 0, 0}, [3]float64{1.0 / 3, 2.0 / 3, 0}, false},
		{"no client zone: one level", [3]int{0, 0, 9}, [3]int{0, 0, 9}, [3]float64{0, 0, 1}, false},
	} {
		got, panicking := Shares(tc.total, tc.ready, DefaultOverprovisioning, DefaultPanicThreshold)
		for i := range got {
			if math.Abs(got[i]-tc.want[i]) > 1e-9 {
				t.Errorf("%s: shares %v, want %v", tc.name, got, tc.want)
				break
			}
		}
		if panicking != tc.panicking {
			t.Errorf("%s: panicking %v, want %v", tc.name, panicking, tc.panicking)
		}
	}
	// The threshold -1: never panic.
	if _, panicking := Shares([3]int{3, 3, 3}, [3]int{0, 1, 0}, 1.4, -1); panicking {
		t.Error("panic threshold -1 panicked")
	}
}

type fixedPicker struct{ sc balancer.SubConn }

func (p fixedPicker) Pick(balancer.PickInfo) (balancer.PickResult, error) {
	return balancer.PickResult{SubConn: p.sc}, nil
}

// TestPickAllocates: choosing a level allocates nothing, and hands grpc-go
// the parent's subchannel.
func TestPickAllocates(t *testing.T) {
	inner := &subConn{}
	wrapped := &subConn{SubConn: inner}
	p := &picker{}
	p.add(fixedPicker{wrapped}, 0.7)
	p.add(fixedPicker{wrapped}, 0.3)
	allocs := testing.AllocsPerRun(1000, func() {
		res, _ := p.Pick(balancer.PickInfo{})
		if res.SubConn != balancer.SubConn(inner) {
			t.Fatal("the pick did not unwrap the subchannel")
		}
	})
	if allocs != 0 {
		t.Errorf("a pick allocates %v, want 0", allocs)
	}
}

// BenchmarkPick is the cost of choosing a level.
func BenchmarkPick(b *testing.B) {
	sc := &subConn{SubConn: &subConn{}}
	p := &picker{}
	p.add(fixedPicker{sc}, 0.933)
	p.add(fixedPicker{sc}, 0.067)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p.Pick(balancer.PickInfo{})
		}
	})
}

package weighted

import (
	"slices"
	"testing"

	"google.golang.org/grpc/balancer"
)

func TestSequenceIsSmooth(t *testing.T) {
	// nginx's example: weights 5, 1, 1 visit a a b a c a a.
	if got, want := sequence([]uint32{5, 1, 1}), []int{0, 0, 1, 0, 2, 0, 0}; !slices.Equal(got, want) {
		t.Errorf("sequence(5, 1, 1) = %v, want %v", got, want)
	}
}

func TestSequenceShares(t *testing.T) {
	for _, tc := range []struct {
		name    string
		weights []uint32
		want    []int // visits per endpoint in one sequence
	}{
		{"1:2:3", []uint32{1, 2, 3}, []int{1, 2, 3}},
		{"common divisor", []uint32{100, 200, 300}, []int{1, 2, 3}},
		{"unset weighs the average", []uint32{0, 2, 4}, []int{3, 2, 4}},
		{"none set", []uint32{0, 0}, []int{1, 1}},
		{"scaled down", []uint32{1_000_000, 3_000_000, 7}, []int{2500, 7500, 1}},
	} {
		seq := sequence(tc.weights)
		got := make([]int, len(tc.weights))
		for _, i := range seq {
			got[i]++
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: visits %v, want %v", tc.name, got, tc.want)
		}
	}
}

type fixedPicker struct{}

func (fixedPicker) Pick(balancer.PickInfo) (balancer.PickResult, error) {
	return balancer.PickResult{}, nil
}

func TestPickAllocatesNothing(t *testing.T) {
	p := &picker{seq: []balancer.Picker{fixedPicker{}, fixedPicker{}}}
	if n := testing.AllocsPerRun(1000, func() { p.Pick(balancer.PickInfo{}) }); n != 0 {
		t.Errorf("Pick allocates %v times, want 0", n)
	}
}

func BenchmarkPick(b *testing.B) {
	p := &picker{seq: make([]balancer.Picker, 6)}
	for i := range p.seq {
		p.seq[i] = fixedPicker{}
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p.Pick(balancer.PickInfo{})
		}
	})
}

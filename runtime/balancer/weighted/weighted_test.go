package weighted

import (
	"math"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"testing"

	"google.golang.org/grpc/balancer"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/internal/fastrand"
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
	p := newPicker([]balancer.Picker{fixedPicker{}, fixedPicker{}})
	if n := testing.AllocsPerRun(1000, func() { p.Pick(balancer.PickInfo{}) }); n != 0 {
		t.Errorf("Pick allocates %v times, want 0", n)
	}
}

func BenchmarkPick(b *testing.B) {
	seq := make([]balancer.Picker, 6)
	for i := range seq {
		seq[i] = fixedPicker{}
	}
	p := newPicker(seq)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p.Pick(balancer.PickInfo{})
		}
	})
}

// idSubConn tells the endpoint a pick chose.
type idSubConn struct {
	balancer.SubConn
	id int
}

type idPicker struct{ sc *idSubConn }

func (p idPicker) Pick(balancer.PickInfo) (balancer.PickResult, error) {
	return balancer.PickResult{SubConn: p.sc}, nil
}

func newIDPicker(weights []uint32) (*picker, []int) {
	seq := sequence(weights)
	pickers := make([]balancer.Picker, len(seq))
	for i, e := range seq {
		pickers[i] = idPicker{&idSubConn{id: e}}
	}
	return newPicker(pickers), seq
}

func pickID(t *testing.T, p *picker) int {
	res, err := p.Pick(balancer.PickInfo{})
	if err != nil {
		t.Fatal(err)
	}
	return res.SubConn.(*idSubConn).id
}

// TestOneGoroutineFollowsTheSequence: the calls of one goroutine go
// through the smooth sequence in order, from wherever its stripe is. (Its
// stripe is a hash of its stack address: a GC may shrink the stack and move
// it, so the GC is off meanwhile.)
func TestOneGoroutineFollowsTheSequence(t *testing.T) {
	runtime.GC()
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	p, seq := newIDPicker([]uint32{5, 1, 1}) // a a b a c a a
	for i := range p.next {
		p.next[i].n.Store(uint32(i)) // stripes at different places
	}
	for range 10 { // the stack settles
		pickID(t, p)
	}
	var got []int
	for range 10 * len(seq) {
		got = append(got, pickID(t, p))
	}
	// Where in the sequence did it start? The one rotation that fits.
	fits := 0
	for start := range seq {
		ok := true
		for k, id := range got {
			if seq[(start+k)%len(seq)] != id {
				ok = false
				break
			}
		}
		if ok {
			fits++
		}
	}
	if fits == 0 {
		t.Errorf("picks %v follow no rotation of the sequence %v", got, seq)
	}
}

// TestGoroutinesAtOnceKeepTheShares: goroutines picking at once, more of
// them than stripes so that some share one, lose no pick: each stripe's
// counter went up once a pick, and each endpoint got exactly what its
// stripes' runs through the sequence give it.
func TestGoroutinesAtOnceKeepTheShares(t *testing.T) {
	weights := []uint32{1, 2, 3}
	p, seq := newIDPicker(weights) // counters from 0
	const goroutines, each = 4 * fastrand.Stripes, 999
	counts := make([][3]int, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for range each {
				counts[g][pickID(t, p)]++
			}
		})
	}
	wg.Wait()
	var got, want [3]int
	for _, c := range counts {
		for i, n := range c {
			got[i] += n
		}
	}
	picks := 0
	for i := range p.next {
		n := int(p.next[i].n.Load())
		picks += n
		for k := range n {
			want[seq[k%len(seq)]]++
		}
	}
	if picks != goroutines*each {
		t.Errorf("the stripes counted %d picks, want %d", picks, goroutines*each)
	}
	if got != want {
		t.Errorf("picks per endpoint %v, want %v (what the stripes' counters give)", got, want)
	}
	for i, w := range weights {
		share := float64(goroutines*each) * float64(w) / 6
		if d := math.Abs(float64(got[i]) - share); d > float64(fastrand.Stripes*len(seq)) {
			t.Errorf("endpoint %d (weight %d): %d picks, want %.0f within one sequence a stripe", i, w, got[i], share)
		}
	}
	t.Logf("picks per endpoint, weights 1:2:3: %v", got)
}

// TestIndexIsTheRemainder: the picker's division-free n % len(seq) is the
// remainder for every length the sequence can have and counters up to 2³²-1.
func TestIndexIsTheRemainder(t *testing.T) {
	for _, l := range []int{1, 2, 3, 6, 7, 100, 4099, MaxSequence - 1, MaxSequence} {
		p := newPicker(make([]balancer.Picker, l))
		ns := []uint32{0, 1, math.MaxUint32, math.MaxUint32 - 1, uint32(l), uint32(l) - 1}
		for range 10_000 {
			ns = append(ns, rand.Uint32())
		}
		for _, n := range ns {
			if got, want := p.index(n), uint64(n%uint32(l)); got != want {
				t.Fatalf("len %d: index(%d) = %d, want %d", l, n, got, want)
			}
		}
	}
}

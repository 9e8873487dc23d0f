package fastrand

import (
	"math"
	"math/rand/v2"
	"sync"
	"testing"
)

// chiSquare is the chi-square statistic of counts against a uniform
// distribution.
func chiSquare(counts []int) float64 {
	var total int
	for _, c := range counts {
		total += c
	}
	want := float64(total) / float64(len(counts))
	var x float64
	for _, c := range counts {
		d := float64(c) - want
		x += d * d / want
	}
	return x
}

// TestUniform draws from 8 goroutines at once into 100 buckets: the draws
// are uniform (chi-square with 99 degrees of freedom below 157, its
// 99.98th percentile) and pairs of successive draws independent (9,999
// degrees of freedom: below 10,600).
func TestUniform(t *testing.T) {
	const n, goroutines, draws = 100, 8, 200_000
	counts := make([][n]int, goroutines)
	pairs := make([][n * n]int, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			prev := IntN(n)
			for range draws {
				v := IntN(n)
				counts[g][v]++
				pairs[g][prev*n+v]++
				prev = v
			}
		})
	}
	wg.Wait()
	all := make([]int, n)
	allPairs := make([]int, n*n)
	for g := range goroutines {
		for i, c := range counts[g] {
			all[i] += c
		}
		for i, c := range pairs[g] {
			allPairs[i] += c
		}
	}
	if x := chiSquare(all); x > 157 {
		t.Errorf("chi-square of %d draws over %d buckets = %.1f, want < 157", goroutines*draws, n, x)
	}
	if x := chiSquare(allPairs); x > 10600 {
		t.Errorf("chi-square of successive pairs = %.1f, want < 10600", x)
	}
}

// TestSharedStripe: goroutines that share a stripe each get their own
// numbers, none twice (a state read and written without the atomic add
// would hand two of them the same one).
func TestSharedStripe(t *testing.T) {
	const goroutines, draws = 8, 50_000
	s := &stripes[0]
	got := make([][]uint64, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			got[g] = make([]uint64, draws)
			for i := range got[g] {
				got[g][i] = s.next()
			}
		})
	}
	wg.Wait()
	seen := make(map[uint64]bool, goroutines*draws)
	for _, vs := range got {
		for _, v := range vs {
			if seen[v] {
				t.Fatalf("%#x drawn twice from one stripe", v)
			}
			seen[v] = true
		}
	}
}

// TestBitsAreBalanced: every bit of Uint64 is set in half the draws.
func TestBitsAreBalanced(t *testing.T) {
	const draws = 1 << 20
	var ones [64]int
	for range draws {
		v := Uint64()
		for b := range 64 {
			ones[b] += int(v >> b & 1)
		}
	}
	// 5 standard deviations (sqrt(draws)/2 = 512).
	for b, c := range ones {
		if math.Abs(float64(c)-draws/2) > 5*512 {
			t.Errorf("bit %d set in %d of %d draws", b, c, draws)
		}
	}
}

func TestIntNRange(t *testing.T) {
	for _, n := range []int{1, 2, 3, 7, 100, 1 << 20} {
		for range 1000 {
			if v := IntN(n); v < 0 || v >= n {
				t.Fatalf("IntN(%d) = %d", n, v)
			}
		}
	}
}

func TestNoAllocs(t *testing.T) {
	if n := testing.AllocsPerRun(1000, func() { _ = Uint64() }); n != 0 {
		t.Errorf("Uint64 allocates %v times, want 0", n)
	}
}

var sink uint64

// BenchmarkUint64 compares with math/rand/v2; run with -cpu 1,2 for the
// serial and the parallel cost.
func BenchmarkUint64(b *testing.B) {
	b.Run("src=fastrand", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			var s uint64
			for pb.Next() {
				s += Uint64()
			}
			sink += s
		})
	})
	b.Run("src=math_rand_v2", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			var s uint64
			for pb.Next() {
				s += rand.Uint64()
			}
			sink += s
		})
	})
}

// TestPair: the two numbers differ, and each of the n(n-1) ordered pairs
// comes up as often (n = 5: chi-square with 19 degrees of freedom below
// 45, about its 99.9th percentile).
func TestPair(t *testing.T) {
	const n, draws = 5, 200_000
	counts := make([]int, n*n)
	for range draws {
		i, j := Pair(Uint64(), n)
		if i == j || i < 0 || j < 0 || i >= n || j >= n {
			t.Fatalf("Pair(_, %d) = %d, %d", n, i, j)
		}
		counts[i*n+j]++
	}
	var pairs []int
	for i := range n {
		for j := range n {
			if i != j {
				pairs = append(pairs, counts[i*n+j])
			}
		}
	}
	if x := chiSquare(pairs); x > 45 {
		t.Errorf("chi-square of %d pairs = %.1f, want < 45 (%v)", draws, x, pairs)
	}
}

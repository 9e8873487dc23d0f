package consistenthash

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/hashspread"
	"google.golang.org/grpc/resolver"
)

// spread hashes keys keys over a table of the backends names and returns
// each key's backend name.
func spread(names []string, size, keys int) []string {
	t := newTable(names, tableSize(size, len(names)))
	out := make([]string, keys)
	var b [8]byte
	for k := range keys {
		binary.LittleEndian.PutUint64(b[:], uint64(k))
		out[k] = names[t.slots[t.slot(Hash(b[:]))]]
	}
	return out
}

func backends(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("10.0.%d.%d:50051", i/250, i%250+1)
	}
	return names
}

// hashFigures measures 1,000,000 keys over n backends: the busiest
// backend's load over the mean, and the keys moved when one backend is
// added and when one is removed, as multiples of the minimum.
func hashFigures(n, keys int) (maxMean, added, removed float64) {
	names := backends(n + 1)
	without := append(append([]string(nil), names[:n/2]...), names[n/2+1:n]...) // the one in the middle removed
	return hashspread.Figures(n,
		spread(names[:n], DefaultTableSize, keys),
		spread(names, DefaultTableSize, keys),
		spread(without, DefaultTableSize, keys),
		names[n/2])
}

// TestEvenAndStable holds the table to the bar: over 1,000,000
// keys at 3, 10 and 100 backends the busiest gets at most 1.05x the mean,
// and adding or removing one moves at most 1.2x the minimum of keys.
// (grpc-go's ring_hash at its default sizes: 1.02, 1.16, 2.03x the mean.)
func TestEvenAndStable(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000,000 keys")
	}
	for _, n := range []int{3, 10, 100} {
		maxMean, added, removed := hashFigures(n, 1_000_000)
		t.Logf("%3d backends: max/mean %.3f, moved on add %.3fx, on remove %.3fx the minimum", n, maxMean, added, removed)
		if maxMean > 1.05 {
			t.Errorf("%d backends: the busiest gets %.3fx the mean, want at most 1.05", n, maxMean)
		}
		if added > 1.2 || removed > 1.2 {
			t.Errorf("%d backends: adding one moves %.3fx the minimum, removing one %.3fx; want at most 1.2", n, added, removed)
		}
	}
}

// TestTableEven: every backend holds size/n slots, give or take one.
func TestTableEven(t *testing.T) {
	for _, n := range []int{1, 2, 7, 100, 1000} {
		names := backends(n)
		size := tableSize(DefaultTableSize, n)
		tb := newTable(names, size)
		count := make([]int, n)
		for _, s := range tb.slots {
			count[s]++
		}
		lo, hi := size/n, (size+n-1)/n
		for i, c := range count {
			if c < lo || c > hi {
				t.Fatalf("%d backends, %d slots: backend %d holds %d slots, want %d to %d", n, size, i, c, lo, hi)
			}
		}
	}
}

// TestTableOrderFree: the table depends on the names alone, so clients that
// list the backends in another order agree.
func TestTableDeterministic(t *testing.T) {
	a := newTable(backends(10), DefaultTableSize)
	b := newTable(backends(10), DefaultTableSize)
	for i := range a.slots {
		if a.slots[i] != b.slots[i] {
			t.Fatalf("slot %d: %d then %d", i, a.slots[i], b.slots[i])
		}
	}
}

func TestTableSize(t *testing.T) {
	for _, c := range []struct{ size, n, want int }{
		{DefaultTableSize, 100, DefaultTableSize},
		{DefaultTableSize, 524, DefaultTableSize},
		{DefaultTableSize, 525, 1048573},
		{DefaultTableSize, 2000, 2097143},
		{DefaultTableSize, 5000, MaxTableSize},
		{65537, 3, 65537},
		{65537, 66, 1048573},
	} {
		if got := tableSize(c.size, c.n); got != c.want {
			t.Errorf("tableSize(%d, %d) = %d, want %d", c.size, c.n, got, c.want)
		}
	}
	for _, m := range []uint64{DefaultTableSize, 1048573, 2097143, MaxTableSize} {
		if !isPrime(m) {
			t.Errorf("%d is not prime", m)
		}
	}
}

// BenchmarkHashing reports the figures of TestEvenAndStable as metrics,
// for make bench's table next to grpc-go's ring_hash.
func BenchmarkHashing(b *testing.B) {
	for _, n := range []int{3, 10, 100} {
		b.Run(fmt.Sprintf("endpoints=%d", n), func(b *testing.B) {
			var maxMean, added, removed float64
			for b.Loop() {
				maxMean, added, removed = hashFigures(n, 1_000_000)
			}
			b.ReportMetric(maxMean, "max/mean")
			b.ReportMetric(added, "moved-add/min")
			b.ReportMetric(removed, "moved-remove/min")
		})
	}
}

func BenchmarkNewTable(b *testing.B) {
	for _, n := range []int{3, 10, 100} {
		b.Run(fmt.Sprintf("endpoints=%d", n), func(b *testing.B) {
			names := backends(n)
			for b.Loop() {
				newTable(names, DefaultTableSize)
			}
		})
	}
}

// TestTableCountsItsSlots: the slots a table says each backend holds (what
// the live page shows as its share) are the slots that name it.
func TestTableCountsItsSlots(t *testing.T) {
	names := []string{"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80"}
	tbl := newTable(names, 65537)
	counted := make([]int, len(names))
	for _, i := range tbl.slots {
		counted[i]++
	}
	if !slices.Equal(counted, tbl.owned) {
		t.Errorf("owned %v, counted in the slots %v", tbl.owned, counted)
	}
	st := &state{}
	st.share.Store(math.Float64bits(float64(tbl.owned[0]) / float64(len(tbl.slots))))
	if got, want := st.Describe(resolver.Endpoint{}), "table 25.0%, in flight 0"; got != want {
		t.Errorf("Describe() = %q, want %q", got, want)
	}
}

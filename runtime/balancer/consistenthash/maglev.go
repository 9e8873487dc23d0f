package consistenthash

import (
	"math/bits"

	"github.com/cespare/xxhash/v2"
)

// table is a Maglev lookup table (Eisenbud et al., NSDI 2016): size slots,
// each naming one of the backends, filled so that every backend holds
// size/n slots give or take one (even load), and from each backend's own
// pseudo-random permutation of the slots (a backend added or removed moves
// little more than its own share of the keys). The backends' names decide
// it alone, so every client of a fleet builds the same table.
type table struct {
	slots []uint16 // backend index per slot, in names' order
	owned []int    // how many slots each backend holds, in names' order
}

// newTable fills a table of size slots (a prime, at least len(names)) for
// the backends named (at most MaxInstances), in that order; ties go to the
// earlier name.
func newTable(names []string, size int) *table {
	n := len(names)
	pos := make([]uint64, n)  // each backend's next slot in its permutation
	skip := make([]uint64, n) // and the step to the one after
	m := uint64(size)
	for i, name := range names {
		h := xxhash.Sum64String(name)
		pos[i] = h % m
		skip[i] = mix(h)%(m-1) + 1
	}
	slots := make([]uint16, size)
	owned := make([]int, n)
	taken := make([]bool, size)
	// step moves backend i to the next slot of its permutation
	// (offset + j*skip) mod m, without a division.
	step := func(i int) {
		if pos[i] += skip[i]; pos[i] >= m {
			pos[i] -= m
		}
	}
	for filled := 0; ; {
		for i := range n {
			for taken[pos[i]] {
				step(i)
			}
			slots[pos[i]], taken[pos[i]] = uint16(i), true
			owned[i]++
			step(i)
			if filled++; filled == size {
				return &table{slots: slots, owned: owned}
			}
		}
	}
}

// slot returns the slot of hash h: a multiply-shift reduction, as even as
// a modulo and cheaper.
func (t *table) slot(h uint64) int {
	hi, _ := bits.Mul64(h, uint64(len(t.slots)))
	return int(hi)
}

// mix is SplitMix64's finalizer: a second hash of a name from its first.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// isPrime reports whether n is prime (trial division: table sizes are
// checked once per config).
func isPrime(n uint64) bool {
	if n < 2 {
		return false
	}
	for d := uint64(2); d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}

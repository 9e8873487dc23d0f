// Package fastrand is the pickers' source of random numbers: as uniform as
// math/rand/v2's, at half its cost from one goroutine, and without a shared
// counter's contention from many.
//
// math/rand/v2's top-level functions cost about 5 ns a number (the
// runtime's per-thread ChaCha8), more than the atomic add of a round robin
// picker; one atomic wyrand state is cheaper from one goroutine but every
// core writes its cache line. Here the state is striped: 64
// cache-line-padded wyrand states (the generator of the runtime's own
// cheaprand), each seeded from math/rand/v2, and a call advances the stripe
// picked by a hash of the calling goroutine's stack address. Goroutines
// running at once have different stacks, so they mostly touch different
// stripes; two that share one still get numbers from one wyrand stream,
// each once, through an atomic add.
package fastrand

import (
	"math/bits"
	"math/rand/v2"
	"sync/atomic"
	"unsafe"
)

// stripeBits is log2 of the number of stripes.
const stripeBits = 6

// wyrand's constants (Wang Yi's wyhash, as in the Go runtime).
const (
	wyp0 = 0xa0761d6478bd642f
	wyp1 = 0xe7037ed1a0b428db
)

type stripe struct {
	state atomic.Uint64
	_     [64 - 8]byte // one cache line each
}

var stripes [1 << stripeBits]stripe

func init() {
	for i := range stripes {
		stripes[i].state.Store(rand.Uint64())
	}
}

// Stripes is the number of stripes: Stripe returns a number in [0, Stripes).
const Stripes = 1 << stripeBits

// Stripe returns the calling goroutine's stripe, a hash of its stack
// address: the same for the same goroutine while its stack stays where it
// is, and mostly different for goroutines running at once. Uint64 draws
// from the stripe's random state; a picker may keep a counter per stripe
// the same way, so that goroutines on different cores do not all write one
// word.
func Stripe() int {
	var onStack byte
	// Stacks are at least 2 KiB apart, but aligned to their size, and
	// callers on the same path sit at the same offset in theirs: only the
	// bits above log2(stack size) tell them apart. A Fibonacci hash of all
	// the bits above the 10th spreads them over the stripes whatever the
	// stacks have grown to.
	sp := uint64(uintptr(unsafe.Pointer(&onStack))) >> 10
	return int(sp * 0x9e3779b97f4a7c15 >> (64 - stripeBits))
}

// Uint64 returns a uniformly distributed random number.
func Uint64() uint64 { return stripes[Stripe()].next() }

// next advances the stripe's wyrand state and returns its output.
func (s *stripe) next() uint64 {
	x := s.state.Add(wyp0)
	hi, lo := bits.Mul64(x, x^wyp1)
	return hi ^ lo
}

// Uint32 returns a uniformly distributed random number.
func Uint32() uint32 { return uint32(Uint64()) }

// IntN returns a uniformly distributed number in [0, n), for 0 < n ≤ 2³²
// (a multiply-shift of 32 random bits: its bias, below n/2³², is far
// below what a balancer can see).
func IntN(n int) int { return int(uint64(Uint32()) * uint64(n) >> 32) }

// Pair returns two distinct numbers in [0, n), n ≥ 2, uniformly
// distributed, from one random number r: i from its high 32 bits, j from
// its low 32 bits over the n-1 others (multiply-shifts, which the lowest
// bits of r barely move: a caller may use those for something else).
func Pair(r uint64, n int) (i, j int) {
	i = int((r >> 32) * uint64(n) >> 32)
	j = int((r & 0xffffffff) * uint64(n-1) >> 32)
	if j >= i {
		j++
	}
	return i, j
}

// Package weighted is smooth weighted round robin over the weights the
// registry gives each instance: Consul's Weights.Passing or Meta "weight",
// etcd metadata "weight", DNS SRV weights (discovery puts them on the
// endpoints as grpc-go's experimental/balancer/weight).
//
// Importing it registers the "lb_weighted_round_robin" policy (grpc-go's
// own "weighted_round_robin" weighs by ORCA load reports instead):
//
//	grpc.NewClient(target,
//		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"lb_weighted_round_robin":{}}]}`), ...)
//
// Calls follow a precomputed smooth sequence (nginx's smooth weighted round
// robin: with weights 5:1:1 the order is a a b a c a a, not a a a a a b c),
// so a pick is one atomic add and an index: lock-free, no allocation. The
// place in the sequence is kept per stripe of the calling goroutine (64
// counters, each on its own cache line, chosen by a hash of the stack
// address as fastrand's random states are): one goroutine's calls follow the
// sequence in order (while its stack stays where it is and no other
// goroutine shares its stripe), and goroutines calling at once mostly
// advance different counters instead of all writing one, each following the
// order from its own place; together they keep the weights to within one
// sequence per stripe, and lose no pick. An instance without a weight (or
// with weight 0) weighs the average of the others (through Consul, which
// gives an instance registered without weights Passing 1, that is 1). A
// weight changed in the registry applies at the next resolver update,
// without new connections. Weights are scaled down, keeping their
// ratios within 1%, when they add up to more than MaxSequence.
package weighted

import (
	"math/bits"
	"math/rand/v2"
	"strconv"
	"sync/atomic"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/experimental/balancer/weight"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/internal/fastrand"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/internal/ready"
)

// Name is the name of the balancer.
const Name = "lb_weighted_round_robin"

// MaxSequence bounds the length of the pick sequence.
const MaxSequence = 10_000

func init() {
	balancer.Register(builder{})
}

// Config selects the policy; it has no parameters.
type Config struct{}

// BalancerName returns Name.
func (Config) BalancerName() string { return Name }

// BalancerConfig returns {}.
func (Config) BalancerConfig() any { return struct{}{} }

// state is an endpoint's: nothing but what the live page shows.
type state struct{}

// Describe shows the endpoint's weight on the live page, as the registry
// gave it (unset weights take the mean of the set ones).
func (*state) Describe(ep resolver.Endpoint) string {
	if w := weight.FromEndpoint(ep).Weight; w > 0 {
		return "weight " + strconv.FormatUint(uint64(w), 10)
	}
	return "weight unset"
}

type builder struct{}

func (builder) Name() string { return Name }

func (builder) Build(cc balancer.ClientConn, opts balancer.BuildOptions) balancer.Balancer {
	return ready.NewBalancer(cc, opts, func(children []ready.Child[state], _ serviceconfig.LoadBalancingConfig) balancer.Picker {
		weights := make([]uint32, len(children))
		for i, c := range children {
			weights[i] = weight.FromEndpoint(c.Endpoint).Weight
		}
		seq := sequence(weights)
		pickers := make([]balancer.Picker, len(seq))
		for i, c := range seq {
			pickers[i] = children[c].Picker
		}
		p := newPicker(pickers)
		// Each client, and each stripe of it, starts at its own place in
		// the sequence.
		for i := range p.next {
			p.next[i].n.Store(rand.Uint32N(uint32(len(seq))))
		}
		return p
	})
}

// picker follows the sequence with one counter per fastrand stripe: the
// calls of one goroutine mostly go through the sequence in order; goroutines
// running at once mostly advance different counters, each on its own cache
// line, instead of all writing one.
type picker struct {
	seq  []balancer.Picker
	m    uint64        // ⌈2⁶⁴/len(seq)⌉: i % len(seq) without a division (Lemire's fastmod)
	_    [64 - 32]byte // the counters' writes stay off seq's and m's cache line
	next [fastrand.Stripes]counter
}

// newPicker returns a picker over seq (at least one), its counters at 0.
func newPicker(seq []balancer.Picker) *picker {
	return &picker{seq: seq, m: ^uint64(0)/uint64(len(seq)) + 1}
}

// counter is a stripe's place in the sequence. 32 bits, which index needs:
// when one wraps, after 2³² calls of a stripe, that stripe skips to another
// place, once.
type counter struct {
	n atomic.Uint32
	_ [64 - 4]byte
}

func (p *picker) Pick(info balancer.PickInfo) (balancer.PickResult, error) {
	c := &p.next[fastrand.Stripe()]
	return p.seq[p.index(c.n.Add(1)-1)].Pick(info)
}

// PickAside picks at a random place in the sequence, leaving the counters
// alone: a hedge (parent.AsidePicker) goes to an instance with the odds
// of its weight without moving the calls that follow it.
func (p *picker) PickAside(info balancer.PickInfo) (balancer.PickResult, error) {
	return p.seq[fastrand.IntN(len(p.seq))].Pick(info)
}

// index is n % len(p.seq), by two multiplications (Lemire's fastmod: exact
// for every 32-bit n and length) instead of a division, which costs more.
func (p *picker) index(n uint32) uint64 {
	i, _ := bits.Mul64(p.m*uint64(n), uint64(len(p.seq)))
	return i
}

// sequence returns the order in which smooth weighted round robin visits
// the endpoints of weights (0: the average of the others), as indices.
func sequence(weights []uint32) []int {
	w := make([]int64, len(weights))
	var sum, set int64
	for _, x := range weights {
		if x > 0 {
			sum += int64(x)
			set++
		}
	}
	def := int64(1)
	if set > 0 {
		def = max(1, (sum+set/2)/set)
	}
	sum = 0
	for i, x := range weights {
		w[i] = int64(x)
		if x == 0 {
			w[i] = def
		}
		sum += w[i]
	}
	if g := gcdAll(w); g > 1 {
		for i := range w {
			w[i] /= g
		}
		sum /= g
	}
	if sum > MaxSequence {
		// Scale down; each keeps at least 1.
		total := int64(0)
		for i := range w {
			w[i] = max(1, (w[i]*MaxSequence+sum/2)/sum)
			total += w[i]
		}
		sum = total
	}
	seq := make([]int, 0, sum)
	current := make([]int64, len(w))
	for range sum {
		best := 0
		for i := range w {
			current[i] += w[i]
			if current[i] > current[best] {
				best = i
			}
		}
		current[best] -= sum
		seq = append(seq, best)
	}
	return seq
}

func gcdAll(w []int64) int64 {
	g := int64(0)
	for _, x := range w {
		for x != 0 {
			g, x = x, g%x
		}
	}
	return g
}

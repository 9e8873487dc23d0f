// Package pickfirst is pick_first with client-side health checking: every
// call goes to one instance over one connection, the first of this
// client's own shuffled order that connects and reports SERVING (gRFC A62's
// shuffle, so a fleet of clients spreads over the instances). An instance
// that fails or turns NOT_SERVING is left for the next one, and the client
// stays there, as pick_first does.
//
// grpc-go's pick_first checks health only as a leaf under another policy;
// as the channel's policy a NOT_SERVING instance keeps every call. This
// policy keeps one grpc-go pick_first child on one instance at a time, with
// its health listener on, and moves it along the order when the instance
// is not usable.
//
// Importing it registers the "lb_pick_first" policy:
//
//	grpc.NewClient(target,
//		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"lb_pick_first":{}}],"healthCheckConfig":{"serviceName":"pkg.Svc"}}`), ...)
package pickfirst

import (
	"cmp"
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"sync"

	"github.com/cespare/xxhash/v2"
	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/base"
	"google.golang.org/grpc/balancer/pickfirst"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/resolver"
)

// Name is the name of the balancer.
const Name = "lb_pick_first"

func init() {
	balancer.Register(builder{})
}

// Config selects lb_pick_first; it has no parameters.
type Config struct{}

// BalancerName returns Name.
func (Config) BalancerName() string { return Name }

// BalancerConfig returns {}.
func (Config) BalancerConfig() any { return struct{}{} }

type builder struct{}

func (builder) Name() string { return Name }

func (builder) Build(cc balancer.ClientConn, opts balancer.BuildOptions) balancer.Balancer {
	b := &pickFirst{cc: cc, seed: rand.Uint64()}
	b.child = balancer.Get(pickfirst.Name).Build(&childCC{ClientConn: cc, b: b}, opts)
	return b
}

// pickFirst holds the endpoints in this client's order and the index of
// the one its child is on.
//
// The child reports from inside calls into it, holding its own lock, so a
// move to the next endpoint cannot call it back there: a goroutine makes
// the move, and callMu keeps calls into the child one at a time.
type pickFirst struct {
	cc    balancer.ClientConn
	child balancer.Balancer
	seed  uint64 // this client's order

	callMu sync.Mutex // held while calling the child
	wg     sync.WaitGroup

	mu     sync.Mutex
	state  resolver.State      // guarded by mu
	order  []resolver.Endpoint // guarded by mu
	cur    int                 // index in order of the endpoint the child is on; guarded by mu
	failed int                 // endpoints left in a row since one was READY; guarded by mu
	gen    int                 // counts moves; guarded by mu
	closed bool                // guarded by mu
}

// rank is endpoint e's place in this client's order: a hash of its first
// address with the client's seed, so that the order stays put across
// updates and differs between clients.
func (b *pickFirst) rank(e resolver.Endpoint) uint64 {
	var s [8]byte
	binary.LittleEndian.PutUint64(s[:], b.seed)
	d := xxhash.New()
	d.Write(s[:])
	d.WriteString(e.Addresses[0].Addr)
	return d.Sum64()
}

func (b *pickFirst) UpdateClientConnState(s balancer.ClientConnState) error {
	var eps []resolver.Endpoint
	for _, e := range s.ResolverState.Endpoints {
		if len(e.Addresses) > 0 {
			eps = append(eps, e)
		}
	}
	b.callMu.Lock()
	defer b.callMu.Unlock()
	if len(eps) == 0 {
		b.child.ResolverError(balancer.ErrBadResolverState)
		return balancer.ErrBadResolverState
	}
	// Each endpoint's rank once, not once per comparison.
	type ranked struct {
		rank uint64
		ep   resolver.Endpoint
	}
	order := make([]ranked, len(eps))
	for i, e := range eps {
		order[i] = ranked{b.rank(e), e}
	}
	slices.SortStableFunc(order, func(x, y ranked) int { return cmp.Compare(x.rank, y.rank) })
	for i, r := range order {
		eps[i] = r.ep
	}
	b.mu.Lock()
	// Stay on the current endpoint while it is still there.
	next := 0
	if b.order != nil {
		cur := b.order[b.cur].Addresses[0].Addr
		for i, e := range eps {
			if e.Addresses[0].Addr == cur {
				next = i
			}
		}
	}
	b.state, b.order, b.cur = s.ResolverState, eps, next
	b.gen++
	rs := b.childStateLocked()
	b.mu.Unlock()
	return b.child.UpdateClientConnState(rs)
}

// childStateLocked is what the child is given: the current endpoint, with
// its health listener on.
func (b *pickFirst) childStateLocked() balancer.ClientConnState {
	rs := b.state
	rs.Endpoints = []resolver.Endpoint{b.order[b.cur]}
	rs.Addresses = nil
	return balancer.ClientConnState{ResolverState: pickfirst.EnableHealthListener(rs)}
}

// childState takes the child's state: READY passes up; TRANSIENT_FAILURE
// (unreachable, or NOT_SERVING) moves the child to the next endpoint, with
// calls waiting meanwhile, and passes up once every endpoint has failed in
// a row.
func (b *pickFirst) childState(s balancer.State) {
	b.mu.Lock()
	switch s.ConnectivityState {
	case connectivity.Ready:
		b.failed = 0
	case connectivity.TransientFailure:
		if !b.closed && len(b.order) > 1 && b.failed < len(b.order)-1 {
			b.failed++
			b.cur = (b.cur + 1) % len(b.order)
			b.gen++
			gen := b.gen
			b.wg.Add(1)
			b.mu.Unlock()
			b.cc.UpdateState(balancer.State{ConnectivityState: connectivity.Connecting, Picker: base.NewErrPicker(balancer.ErrNoSubConnAvailable)})
			go b.move(gen)
			return
		}
		b.failed = 0 // the next round starts afresh
	}
	b.mu.Unlock()
	b.cc.UpdateState(s)
}

// move hands the child the endpoint of move gen, unless something newer
// came first.
func (b *pickFirst) move(gen int) {
	defer b.wg.Done()
	b.callMu.Lock()
	defer b.callMu.Unlock()
	b.mu.Lock()
	if b.closed || b.gen != gen {
		b.mu.Unlock()
		return
	}
	rs := b.childStateLocked()
	b.mu.Unlock()
	b.child.UpdateClientConnState(rs)
}

func (b *pickFirst) ResolverError(err error) {
	b.callMu.Lock()
	defer b.callMu.Unlock()
	b.child.ResolverError(err)
}

func (b *pickFirst) UpdateSubConnState(sc balancer.SubConn, s balancer.SubConnState) {
	b.callMu.Lock()
	defer b.callMu.Unlock()
	b.child.UpdateSubConnState(sc, s)
}

func (b *pickFirst) ExitIdle() {
	b.callMu.Lock()
	defer b.callMu.Unlock()
	b.child.ExitIdle()
}

func (b *pickFirst) Close() {
	b.callMu.Lock()
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.child.Close()
	b.callMu.Unlock()
	b.wg.Wait()
}

// childCC is the ClientConn the child sees: its states go through
// childState.
type childCC struct {
	balancer.ClientConn
	b *pickFirst
}

func (c *childCC) UpdateState(s balancer.State) { c.b.childState(s) }

// Package ready is what the balancers of this module share: grpc-go's
// endpointsharding keeps one pick_first child per endpoint (so client-side
// health checking and connection management stay grpc-go's), and a policy
// only says how to pick among the READY children, each with a state of its
// own that lives as long as its endpoint, across pickers.
package ready

import (
	"sync"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/endpointsharding"
	"google.golang.org/grpc/balancer/pickfirst"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"
)

// Child is an endpoint: its pick_first picker, whether it is READY, and its
// state. A new state is S's zero value, then Init() if *S has that method.
type Child[S any] struct {
	Endpoint resolver.Endpoint
	Picker   balancer.Picker
	Ready    bool
	State    *S
}

// NewPicker makes a picker over the children (at least one READY), with
// the balancer's last config (nil before any). NewBalancer passes only the
// READY children, NewBalancerAll every child in the resolver's order.
type NewPicker[S any] func(children []Child[S], cfg serviceconfig.LoadBalancingConfig) balancer.Picker

// NewBalancer returns a balancer over cc whose pickers newPicker makes.
func NewBalancer[S any](cc balancer.ClientConn, opts balancer.BuildOptions, newPicker NewPicker[S]) balancer.Balancer {
	return newBalancer(cc, opts, newPicker, false)
}

// NewBalancerAll is NewBalancer for a policy that needs every endpoint, not
// only the READY ones (consistent hashing keeps a key's place while its
// instance reconnects).
func NewBalancerAll[S any](cc balancer.ClientConn, opts balancer.BuildOptions, newPicker NewPicker[S]) balancer.Balancer {
	return newBalancer(cc, opts, newPicker, true)
}

func newBalancer[S any](cc balancer.ClientConn, opts balancer.BuildOptions, newPicker NewPicker[S], all bool) balancer.Balancer {
	b := &readyBalancer[S]{ClientConn: cc, newPicker: newPicker, all: all, states: map[string]*S{}}
	b.child = endpointsharding.NewBalancer(b, opts, balancer.Get(pickfirst.Name).Build, endpointsharding.Options{})
	return b
}

// readyBalancer sits between endpointsharding and the channel: it passes
// resolver updates down and replaces the pickers coming up.
type readyBalancer[S any] struct {
	balancer.ClientConn // the channel; UpdateState is overridden
	child               balancer.Balancer
	newPicker           NewPicker[S]
	all                 bool // pass every child, not only the READY ones

	mu     sync.Mutex
	cfg    serviceconfig.LoadBalancingConfig
	states map[string]*S // by the endpoint's first address
}

func (b *readyBalancer[S]) UpdateClientConnState(s balancer.ClientConnState) error {
	b.mu.Lock()
	b.cfg = s.BalancerConfig
	b.mu.Unlock()
	return b.child.UpdateClientConnState(balancer.ClientConnState{
		// Let the pick_first children honour client-side health checks.
		ResolverState: pickfirst.EnableHealthListener(s.ResolverState),
	})
}

func (b *readyBalancer[S]) ResolverError(err error) { b.child.ResolverError(err) }

func (b *readyBalancer[S]) UpdateSubConnState(sc balancer.SubConn, s balancer.SubConnState) {
	b.child.UpdateSubConnState(sc, s)
}

func (b *readyBalancer[S]) ExitIdle() { b.child.ExitIdle() }

func (b *readyBalancer[S]) Close() { b.child.Close() }

// UpdateState receives endpointsharding's aggregate state and publishes a
// picker over the READY children. With none ready it passes the aggregate
// on unchanged, so callers see CONNECTING or the failure.
func (b *readyBalancer[S]) UpdateState(s balancer.State) {
	children := endpointsharding.ChildStatesFromPicker(s.Picker)
	b.mu.Lock()
	defer b.mu.Unlock()
	seen := make(map[string]bool, len(children))
	var ready, all []Child[S]
	for _, c := range children {
		if len(c.Endpoint.Addresses) == 0 {
			continue
		}
		addr := c.Endpoint.Addresses[0].Addr
		seen[addr] = true
		st := b.states[addr]
		if st == nil {
			st = new(S)
			if i, ok := any(st).(interface{ Init() }); ok {
				i.Init()
			}
			b.states[addr] = st
		}
		ch := Child[S]{Endpoint: c.Endpoint, Picker: c.State.Picker, Ready: c.State.ConnectivityState == connectivity.Ready, State: st}
		if ch.Ready {
			ready = append(ready, ch)
		}
		if b.all {
			all = append(all, ch)
		}
	}
	for addr := range b.states {
		if !seen[addr] {
			delete(b.states, addr)
		}
	}
	if len(ready) == 0 {
		b.ClientConn.UpdateState(s)
		return
	}
	if b.all {
		ready = all
	}
	b.ClientConn.UpdateState(balancer.State{ConnectivityState: connectivity.Ready, Picker: b.newPicker(ready, b.cfg)})
}

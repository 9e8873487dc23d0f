// Package ready is what the balancers of this module share: grpc-go's
// endpointsharding keeps one pick_first child per endpoint (so client-side
// health checking and connection management stay grpc-go's), and a policy
// only says how to pick among the READY children, each with a state of its
// own that lives as long as its endpoint, across pickers.
package ready

import (
	"maps"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/endpointsharding"
	"google.golang.org/grpc/balancer/pickfirst"
	"google.golang.org/grpc/connectivity"
	estats "google.golang.org/grpc/experimental/stats"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/describe"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/internal/parent"
)

// Child is an endpoint: its pick_first picker, whether it is READY, and its
// state. A new state is S's zero value, then Init() if *S has that method.
type Child[S any] struct {
	Endpoint resolver.Endpoint
	Picker   balancer.Picker
	// Connectivity is the endpoint's state: READY when a copy is, else
	// the best of CONNECTING, IDLE and TRANSIENT_FAILURE among them.
	Connectivity connectivity.State
	State        *S
}

// Ready reports whether the endpoint is READY.
func (c Child[S]) Ready() bool { return c.Connectivity == connectivity.Ready }

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

func newBalancer[S any](cc balancer.ClientConn, opts balancer.BuildOptions, newPicker NewPicker[S], all bool) *readyBalancer[S] {
	b := &readyBalancer[S]{ClientConn: cc, newPicker: newPicker, all: all, states: map[string]*S{}}
	b.child = endpointsharding.NewBalancer(b, opts, balancer.Get(pickfirst.Name).Build, endpointsharding.Options{})
	if _, ok := any(new(S)).(Describer); ok {
		if id, ok := describe.ChannelID(opts); ok {
			b.endpoints = map[string]resolver.Endpoint{}
			b.stopDescribing = describe.Register(id, "policy", b.describe)
		}
	}
	return b
}

// Describer is what *S implements to show an endpoint's state on the live
// page (lb.DebugHandler): "score 1.2ms", "in flight 3", "weight 5". It
// reads what the state keeps, only when the page asks, from another
// goroutine than the calls': atomics, or the endpoint.
type Describer interface {
	Describe(ep resolver.Endpoint) string
}

// describe returns the descriptions of the endpoints, by address, for
// package describe.
func (b *readyBalancer[S]) describe() map[string]string {
	b.mu.Lock()
	states := maps.Clone(b.states)
	endpoints := maps.Clone(b.endpoints)
	b.mu.Unlock()
	out := make(map[string]string, len(states))
	for addr, st := range states {
		out[addr] = any(st).(Describer).Describe(endpoints[addr])
	}
	return out
}

// Reporter reports a policy's numbers of each endpoint (a score, calls in
// flight) as asynchronous gauges, through the MetricsRecorder grpc-go
// hands the balancer, whenever the channel's metrics are collected.
type Reporter[S any] struct {
	// Metrics are the gauges Report records.
	Metrics []estats.AsyncMetric
	// Report records the numbers of the endpoint at addr. target is the
	// channel's target without user info or query, for a grpc.target
	// label.
	Report func(r estats.AsyncMetricsRecorder, target, addr string, st *S)
}

// NewReportingBalancer is NewBalancer whose endpoints' states rep reports.
func NewReportingBalancer[S any](cc balancer.ClientConn, opts balancer.BuildOptions, newPicker NewPicker[S], rep Reporter[S]) balancer.Balancer {
	b := newBalancer(cc, opts, newPicker, false)
	if mr := cc.MetricsRecorder(); mr != nil {
		target := parent.Target(opts)
		// The reporter reads a snapshot, without b.mu: a collection
		// holds the metrics SDK's lock while it asks, and nothing here
		// should ever wait for a lock while that one is held.
		b.reported = &atomic.Pointer[map[string]*S]{}
		b.stopReporting = mr.RegisterAsyncReporter(estats.AsyncMetricReporterFunc(func(r estats.AsyncMetricsRecorder) error {
			if states := b.reported.Load(); states != nil {
				for addr, st := range *states {
					rep.Report(r, target, addr, st)
				}
			}
			return nil
		}), rep.Metrics...)
	}
	return b
}

// readyBalancer sits between endpointsharding and the channel: it passes
// resolver updates down and replaces the pickers coming up.
type readyBalancer[S any] struct {
	balancer.ClientConn // the channel; UpdateState is overridden
	child               balancer.Balancer
	newPicker           NewPicker[S]
	all                 bool // pass every child, not only the READY ones

	stopReporting  func()                         // nil unless a Reporter reports the states
	reported       *atomic.Pointer[map[string]*S] // what it reports: a copy of states; nil without a Reporter
	stopDescribing func()                         // nil unless *S is a Describer and the channel has a channelz ID

	mu        sync.Mutex // guards the fields below
	cfg       serviceconfig.LoadBalancingConfig
	states    map[string]*S                // by the endpoint's first address, without a pool copy's suffix
	endpoints map[string]resolver.Endpoint // the same keys, for a Describer; nil without one
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

func (b *readyBalancer[S]) Close() {
	if b.stopReporting != nil {
		b.stopReporting()
	}
	if b.stopDescribing != nil {
		b.stopDescribing()
	}
	b.child.Close()
}

// UpdateState receives endpointsharding's aggregate state and publishes a
// picker over the READY children. With none ready it passes the aggregate
// on unchanged, so callers see CONNECTING or the failure.
func (b *readyBalancer[S]) UpdateState(s balancer.State) {
	children := endpointsharding.ChildStatesFromPicker(s.Picker)
	b.mu.Lock()
	defer b.mu.Unlock()
	// The copies of an address that package pool makes are one child:
	// they share its state (calls in flight and latency are the
	// backend's), and its picker rotates over the READY copies.
	byAddr := make(map[string]int, len(children)) // index in group
	var group []Child[S]
	var copies [][]balancer.Picker // READY copies' pickers, per group entry
	for _, c := range children {
		if len(c.Endpoint.Addresses) == 0 {
			continue
		}
		addr := parent.BaseAddr(c.Endpoint.Addresses[0].Addr)
		isReady := c.State.ConnectivityState == connectivity.Ready
		i, ok := byAddr[addr]
		if !ok {
			st := b.states[addr]
			if st == nil {
				st = new(S)
				if i, ok := any(st).(interface{ Init() }); ok {
					i.Init()
				}
				b.states[addr] = st
			}
			ep := c.Endpoint
			if ep.Addresses[0].Addr != addr {
				ep.Addresses = append([]resolver.Address{ep.Addresses[0]}, ep.Addresses[1:]...)
				ep.Addresses[0].Addr = addr
			}
			i = len(group)
			byAddr[addr] = i
			group = append(group, Child[S]{Endpoint: ep, Picker: c.State.Picker, Connectivity: c.State.ConnectivityState, State: st})
			copies = append(copies, nil)
		} else if parent.Rank(c.State.ConnectivityState) > parent.Rank(group[i].Connectivity) {
			group[i].Picker, group[i].Connectivity = c.State.Picker, c.State.ConnectivityState
		}
		if isReady {
			copies[i] = append(copies[i], c.State.Picker)
		}
	}
	for addr := range b.states {
		if _, ok := byAddr[addr]; !ok {
			delete(b.states, addr)
		}
	}
	if b.endpoints != nil {
		clear(b.endpoints)
		for _, c := range group {
			b.endpoints[c.Endpoint.Addresses[0].Addr] = c.Endpoint
		}
	}
	if b.reported != nil {
		snapshot := maps.Clone(b.states)
		b.reported.Store(&snapshot)
	}
	var ready []Child[S]
	for i, c := range group {
		switch n := len(copies[i]); {
		case n == 1:
			c.Picker = copies[i][0]
		case n > 1:
			c.Picker = &rotation{pickers: copies[i]}
		}
		group[i] = c
		if c.Ready() {
			ready = append(ready, c)
		}
	}
	if len(ready) == 0 {
		b.ClientConn.UpdateState(s)
		return
	}
	if b.all {
		ready = group
	}
	b.ClientConn.UpdateState(balancer.State{ConnectivityState: connectivity.Ready, Picker: b.newPicker(ready, b.cfg)})
}

// rotation picks the READY copies of one address in turn.
type rotation struct {
	pickers []balancer.Picker
	next    atomic.Uint32
}

func (r *rotation) Pick(info balancer.PickInfo) (balancer.PickResult, error) {
	return r.pickers[int(r.next.Add(1)-1)%len(r.pickers)].Pick(info)
}

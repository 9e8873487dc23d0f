// Package slowstart ramps up the share of calls an instance new to the
// fleet takes (the "lb_slow_start" policy): a parent policy over round
// robin, random, weighted round robin, least request or p2c_ewma, which
// the child policy does not know is there.
//
// Importing it registers the policy:
//
//	grpc.NewClient(target, grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[
//		{"lb_slow_start":{"window":"30s","childPolicy":[{"round_robin":{}}]}}]}`), ...)
//
// Generated clients declare it in (lb.service) as a window, an aggression
// and a floor.
//
// # The ramp
//
// An instance of age t (below) takes, relative to a warm instance of the
// same weight,
//
//	factor = max(MinWeightPercent/100, (t/Window)^(1/Aggression))
//
// of the calls, until t reaches Window: Envoy's slow start formula, with
// its defaults (Aggression 1, a straight ramp; a floor of 10%, so that a
// new instance is tried from the start and its connection and caches warm
// up with the rest of it). The picker lets the child policy pick as usual;
// when the pick lands on a warming instance it keeps it with probability
// factor, else tells the child the pick was not used (its Done, with
// parent.ErrNotUsed) and asks it again, at most 8 times. Under round robin,
// random and weighted round robin that gives the instance exactly factor
// times its weight: with N-1 warm instances, a share of
// factor/(N-1+factor). Under least request and p2c_ewma, which steer by
// what they measure, the instance takes much less than its share early
// and its full share from the window's end.
//
// The picker reads the clock only when a pick lands on a warming
// instance; without one it costs a type assertion over the child's pick.
//
// # When an instance's ramp starts
//
// The age of an instance is counted from its registration time, which this
// module's registrars write in its metadata (etcd's value metadata and
// Consul's service Meta "registered_at"; discovery.Metadata.RegisteredAt):
// a client started, or restarted, in the middle of an instance's window
// continues the same ramp instead of starting it again, and a warm
// instance is warm to every client. The registration time is the writer's
// clock: with clocks apart by d, a client sees the ramp d early or late (a
// registration time in the client's future counts as now, so the ramp
// never starts later than the client first sees the instance). NTP keeps d
// in milliseconds, against windows of seconds.
//
// An instance without a registration time (DNS, static lists, other
// registrars) ramps from when this balancer first sees it READY.
//
// Nothing ramps when no READY instance is warm: a fleet started at once
// (or a client whose first view has no registration times) calls every
// instance in full, as there is no warm instance to spare the new ones.
//
// # Where it does not apply
//
// pick_first sends everything to one instance, and consistent hashing and
// ring hash give each key one instance: a ramp would move keys to other
// instances and back, which is worse for their caches than a cold one.
// Put lb_slow_start over the policies named above only.
//
// # State that shows
//
// On lb.DebugHandler's live page a warming instance reads "warming (37%)",
// its factor now. The metrics (off by default, as grpc-go's LB metrics;
// MetricNames) count the warming instances and give each one's factor.
package slowstart

import (
	"encoding/json"
	"fmt"
	"sync/atomic"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/describe"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/internal/parent"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
)

// Name is the name of the balancer.
const Name = "lb_slow_start"

func init() {
	balancer.Register(builder{})
}

type builder struct{}

func (builder) Name() string { return Name }

func (builder) ParseConfig(js json.RawMessage) (serviceconfig.LoadBalancingConfig, error) {
	return ParseConfig(js)
}

func (builder) Build(cc balancer.ClientConn, opts balancer.BuildOptions) balancer.Balancer {
	b := &slowStartBalancer{instances: map[string]*instance{}, byAddr: map[string]*instance{}}
	b.Balancer = parent.Balancer{CC: &childCC{ClientConn: cc, b: b}, Opts: opts}
	b.stopReporting = registerReporter(b, cc, opts)
	if id, ok := describe.ChannelID(opts); ok {
		b.stopDescribing = describe.Register(id, Name, b.describe)
	}
	return b
}

// slowStartBalancer passes everything to its child, keeping the start of
// each instance, and wraps the child's pickers. Its balancer methods, and
// the child's calls up to it, come from the channel's serializer, one at a
// time: its fields are the serializer's, but view, which the live page and
// the metrics read.
type slowStartBalancer struct {
	parent.Balancer

	stopReporting  func() // nil without a MetricsRecorder
	stopDescribing func() // nil without a channelz ID

	ramp      ramp
	instances map[string]*instance // by the endpoint's first address, without a pool copy's suffix
	byAddr    map[string]*instance // by each address of the endpoints, without a pool copy's suffix
	last      balancer.State       // the child's last state
	published int                  // how many states the child has published

	view atomic.Pointer[view] // the ramp and the instances, as of the last change
}

// view is what the live page and the metrics read: the ramp and the
// instances, whose atomics say which ramp.
type view struct {
	ramp      ramp
	instances []*instance
}

// storeView publishes the ramp and the instances to the readers off the
// serializer.
func (b *slowStartBalancer) storeView() {
	v := &view{ramp: b.ramp, instances: make([]*instance, 0, len(b.instances))}
	for _, in := range b.instances {
		v.instances = append(v.instances, in)
	}
	b.view.Store(v)
}

func (b *slowStartBalancer) UpdateClientConnState(s balancer.ClientConnState) error {
	cfg, ok := s.BalancerConfig.(*Config)
	if !ok {
		return fmt.Errorf("%s: no config", Name)
	}
	b.ramp = newRamp(cfg)
	b.updateInstances(s.ResolverState.Endpoints)
	b.storeView()
	changed := evaluate(b.instances, b.ramp, clk.Nanotime())
	before := b.published
	err := b.Update(cfg.Child, s)
	if changed && b.published == before && b.last.Picker != nil {
		// The child kept its picker, but what ramps changed (a new
		// window, a registration time): publish it again.
		b.publish(b.last)
	}
	return err
}

// updateInstances keeps the instances of eps, with their registration
// times, and forgets the others: one that comes back is new.
func (b *slowStartBalancer) updateInstances(eps []resolver.Endpoint) {
	instances := make(map[string]*instance, len(eps))
	byAddr := make(map[string]*instance, len(eps))
	for _, ep := range eps {
		if len(ep.Addresses) == 0 {
			continue
		}
		addr := parent.BaseAddr(ep.Addresses[0].Addr)
		in := instances[addr]
		if in == nil {
			if in = b.instances[addr]; in == nil {
				in = newInstance(addr)
			}
			instances[addr] = in
		}
		if md, ok := discovery.MetadataOf(ep); ok {
			in.setRegisteredAt(md.RegisteredAt)
		}
		for _, a := range ep.Addresses {
			byAddr[parent.BaseAddr(a.Addr)] = in
		}
	}
	b.instances, b.byAddr = instances, byAddr
}

// instanceOf returns the instance of a SubConn's address, making one for
// an address the resolver did not give.
func (b *slowStartBalancer) instanceOf(addr string) *instance {
	addr = parent.BaseAddr(addr)
	in := b.byAddr[addr]
	if in == nil {
		in = newInstance(addr)
		b.instances[addr], b.byAddr[addr] = in, in
		b.storeView()
	}
	return in
}

// stateChanged counts the READY SubConns of in, and starts its ramp at its
// first READY when it has no registration time.
func (b *slowStartBalancer) stateChanged(in *instance, was, now connectivity.State) {
	switch {
	case was == now:
	case now == connectivity.Ready:
		in.ready++
		if in.start.Load() == noStart {
			in.start.Store(clk.Nanotime())
		}
	case was == connectivity.Ready:
		in.ready--
	}
}

// publish hands the channel s with the child's picker wrapped.
func (b *slowStartBalancer) publish(s balancer.State) {
	evaluate(b.instances, b.ramp, clk.Nanotime())
	ramping := false
	for _, in := range b.instances {
		if in.until.Load() != 0 {
			ramping = true
			break
		}
	}
	if s.Picker != nil {
		s.Picker = newPicker(s.Picker, b.ramp, ramping)
	}
	b.Balancer.CC.(*childCC).ClientConn.UpdateState(s)
}

func (b *slowStartBalancer) Close() {
	if b.stopReporting != nil {
		b.stopReporting()
	}
	if b.stopDescribing != nil {
		b.stopDescribing()
	}
	b.Balancer.Close()
}

// childCC is the ClientConn the child sees: its SubConns know their
// instance, its pickers are wrapped.
type childCC struct {
	balancer.ClientConn
	b *slowStartBalancer
}

// subConn is a SubConn of the child's, with its instance. The child's
// pickers return it; the picker returns the SubConn inside to the channel.
type subConn struct {
	balancer.SubConn
	in *instance
}

func (c *childCC) NewSubConn(addrs []resolver.Address, opts balancer.NewSubConnOptions) (balancer.SubConn, error) {
	if len(addrs) == 0 {
		return c.ClientConn.NewSubConn(addrs, opts)
	}
	in := c.b.instanceOf(addrs[0].Addr)
	w := &subConn{in: in}
	inner := opts.StateListener
	state := connectivity.Idle
	opts.StateListener = func(s balancer.SubConnState) {
		c.b.stateChanged(in, state, s.ConnectivityState)
		state = s.ConnectivityState
		if inner != nil {
			inner(s)
		} else {
			// A child without a listener (deprecated in grpc-go)
			// hears of its SubConn as it knows it.
			c.b.Balancer.UpdateSubConnState(w, s)
		}
	}
	sc, err := c.ClientConn.NewSubConn(addrs, opts)
	if err != nil {
		return nil, err
	}
	w.SubConn = sc
	return w, nil
}

// RemoveSubConn is deprecated in grpc-go; it is kept correct for a child
// that calls it.
func (c *childCC) RemoveSubConn(sc balancer.SubConn) {
	c.ClientConn.RemoveSubConn(unwrap(sc))
}

// UpdateAddresses is deprecated in grpc-go; it is kept correct for a child
// that calls it.
func (c *childCC) UpdateAddresses(sc balancer.SubConn, addrs []resolver.Address) {
	c.ClientConn.UpdateAddresses(unwrap(sc), addrs)
}

func (c *childCC) UpdateState(s balancer.State) {
	c.b.last = s
	c.b.published++
	c.b.publish(s)
}

func unwrap(sc balancer.SubConn) balancer.SubConn {
	if w, ok := sc.(*subConn); ok {
		return w.SubConn
	}
	return sc
}

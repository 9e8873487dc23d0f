// Package locality is zone-aware routing (the "lb_locality" policy): a
// parent that sorts the instances into levels by where they are against
// where the client is, gives each level a share of the calls by its health
// (Envoy's priority load, with overprovisioning and a panic threshold),
// and lets one child policy per level pick within it.
//
//	{"loadBalancingConfig":[{"lb_locality":{"zone":"us-east-1a","region":"us-east-1","childPolicy":[{"round_robin":{}}]}}]}
//
// # Levels
//
// Level 0 holds the instances in the client's zone, level 1 the rest of
// its region, level 2 everything else. An instance's zone and region come
// from its discovery.Metadata (etcd metadata and Consul Meta "zone" and
// "region"); an instance without a zone ranks in level 1 when its region
// is the client's, else in level 2. A client without a zone puts every
// instance in level 2: locality does nothing.
//
// # Shares
//
// A level whose healthy share is h (READY, passing its client-side health
// check, and not ejected by lb_outlier above) takes min(left, o·h) of the
// calls the levels before it left, o the overprovisioning (default 1.4);
// what the last level leaves is spread over the levels in proportion.
// With 3 instances a zone, one of the client's zone down leaves it
// 1.4 × 2/3 = 93.3% of the calls; all three down, none. When fewer than
// PanicThreshold (default 50%) of all the instances are healthy, locality
// is ignored: each level takes its share of the healthy instances, and
// calls spread over all of them.
//
// Inside a level the child policy picks as it always does: round robin
// rotates over the level's instances, p2c_ewma compares two of them.
//
// # The known limit
//
// Local first assumes each zone's instances can serve its zone's callers.
// When callers crowd one zone (more clients there than its instances can
// serve), local first overloads that zone while the others idle:
// overprovisioning spills only for instances that are down, not busy.
// Spread the service's instances like its callers, or leave zone-aware
// routing off for that service.
//
// A pick allocates nothing: one random number chooses the level, none
// when one level takes every call (the client's zone, healthy).
package locality

import (
	"encoding/json"
	"fmt"
	"maps"
	"sync"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/base"
	"google.golang.org/grpc/connectivity"
	estats "google.golang.org/grpc/experimental/stats"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/describe"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/internal/fastrand"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/internal/parent"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
)

// Name is the name of the balancer.
const Name = "lb_locality"

// Levels names the levels, nearest first, as the lb.locality.level label
// and the live page show them.
var Levels = [3]string{"zone", "region", "other"}

func init() {
	balancer.Register(builder{})
}

// The metrics, off by default as grpc-go's LB metrics are (lb.WithMetrics
// turns them on).
var (
	shareMetric = estats.RegisterInt64AsyncGauge(estats.MetricDescriptor{
		Name:        "lb.locality.share",
		Description: "EXPERIMENTAL. The share of a channel's calls each locality level takes now (zone, region, other), in percent.",
		Unit:        "%",
		Labels:      []string{"grpc.target", "lb.locality.level"},
	})
	panicMetric = estats.RegisterInt64AsyncGauge(estats.MetricDescriptor{
		Name:        "lb.locality.panic",
		Description: "EXPERIMENTAL. 1 while fewer than the panic threshold of a channel's instances are healthy and locality is ignored.",
		Unit:        "1",
		Labels:      []string{"grpc.target"},
	})
	panicsMetric = estats.RegisterInt64Count(estats.MetricDescriptor{
		Name:        "lb.locality.panics",
		Description: "EXPERIMENTAL. Times a channel entered panic mode (locality ignored).",
		Unit:        "{panic}",
		Labels:      []string{"grpc.target"},
	})
)

// MetricNames are the names of the metrics above, for a channel's
// OpenTelemetry options.
var MetricNames = []string{"lb.locality.share", "lb.locality.panic", "lb.locality.panics"}

type builder struct{}

func (builder) Name() string { return Name }

func (builder) ParseConfig(js json.RawMessage) (serviceconfig.LoadBalancingConfig, error) {
	return ParseConfig(js)
}

func (builder) Build(cc balancer.ClientConn, opts balancer.BuildOptions) balancer.Balancer {
	b := &localityBalancer{cc: cc, opts: opts, target: parent.Target(opts), subConns: map[*subConn]bool{}}
	if mr := cc.MetricsRecorder(); mr != nil {
		b.metrics = mr
		b.stopReporting = mr.RegisterAsyncReporter(estats.AsyncMetricReporterFunc(func(r estats.AsyncMetricsRecorder) error {
			b.mu.Lock()
			shares, panicking := b.shares, b.panicking
			b.mu.Unlock()
			for i, s := range shares {
				shareMetric.Record(r, int64(s*100+0.5), b.target, Levels[i])
			}
			p := int64(0)
			if panicking {
				p = 1
			}
			panicMetric.Record(r, p, b.target)
			return nil
		}), shareMetric, panicMetric)
	}
	if id, ok := describe.ChannelID(opts); ok {
		b.stopDescribing = describe.Register(id, Name, b.describe)
	}
	return b
}

// localityBalancer is the parent. Every call into it is serialized, by
// the channel or by the parent above it (lb_outlier); the mutex guards
// what the metrics and the live page read from other goroutines.
type localityBalancer struct {
	cc             balancer.ClientConn
	opts           balancer.BuildOptions
	target         string
	metrics        estats.MetricsRecorder // nil without one
	stopReporting  func()
	stopDescribing func()

	cfg      *Config
	levels   [3]*level
	subConns map[*subConn]bool

	mu        sync.Mutex
	shares    [3]float64       // the current picker's
	panicking bool             // the current picker ignores locality
	places    map[string]place // each address's zone and level, for the page
}

// place is where an instance is, against the client.
type place struct {
	zone  string
	level int
}

// level is the instances of one level and the child policy over them.
type level struct {
	idx       int
	child     parent.Balancer
	endpoints []resolver.Endpoint
	state     balancer.State
	reported  bool // the child has given a state
}

// subConn is a subchannel a level's child made, with what the parent
// knows of its health.
type subConn struct {
	balancer.SubConn
	b         *localityBalancer
	addr      string
	level     *level
	conn      connectivity.State
	listening bool                // the child listens for health
	health    *connectivity.State // the last health heard; nil before any
	gen       int
}

// healthy reports whether the subchannel may take calls: READY, and
// SERVING if the child listens for health (lb_outlier above reports an
// ejected instance through it).
func (sc *subConn) healthy() bool {
	if sc.conn != connectivity.Ready {
		return false
	}
	return !sc.listening || sc.health != nil && *sc.health == connectivity.Ready
}

// levelOf ranks md against the client's place.
func (c *Config) levelOf(md discovery.Metadata) int { return Level(c.Zone, c.Region, md) }

// Level ranks an instance (md) against a client in zone and region: 0 in
// the client's zone, 1 elsewhere in its region, 2 anywhere else; every
// instance is 2 to a client without a zone. lb_subset takes its subsets
// within these levels.
func Level(zone, region string, md discovery.Metadata) int {
	switch {
	case zone == "":
		return 2
	case md.Zone == zone:
		return 0
	case region != "" && md.Region == region:
		return 1
	}
	return 2
}

func (b *localityBalancer) UpdateClientConnState(s balancer.ClientConnState) error {
	cfg, ok := s.BalancerConfig.(*Config)
	if !ok {
		return fmt.Errorf("%s: no config", Name)
	}
	b.cfg = cfg
	var split [3][]resolver.Endpoint
	places := map[string]place{}
	for _, ep := range s.ResolverState.Endpoints {
		md, _ := discovery.MetadataOf(ep)
		i := cfg.levelOf(md)
		split[i] = append(split[i], ep)
		for _, a := range ep.Addresses {
			places[a.Addr] = place{zone: md.Zone, level: i}
		}
	}
	b.mu.Lock()
	b.places = places
	b.mu.Unlock()
	var errs []error
	updated := 0
	for i, eps := range split {
		l := b.levels[i]
		if len(eps) == 0 {
			if l != nil {
				b.closeLevel(l)
			}
			continue
		}
		if l == nil {
			l = &level{idx: i}
			l.child = parent.Balancer{CC: &levelCC{ClientConn: b.cc, b: b, l: l}, Opts: b.opts}
			b.levels[i] = l
		}
		l.endpoints = eps
		rs := s.ResolverState
		rs.Endpoints, rs.Addresses = eps, nil
		updated++
		if err := l.child.Update(cfg.Child, balancer.ClientConnState{ResolverState: rs}); err != nil {
			errs = append(errs, err)
		}
	}
	b.regen()
	if updated > 0 && len(errs) == updated {
		return errs[0]
	}
	if updated == 0 {
		b.cc.UpdateState(balancer.State{ConnectivityState: connectivity.TransientFailure, Picker: base.NewErrPicker(balancer.ErrBadResolverState)})
		return balancer.ErrBadResolverState
	}
	return nil
}

// closeLevel closes a level left without instances.
func (b *localityBalancer) closeLevel(l *level) {
	l.child.Close()
	for sc := range b.subConns {
		if sc.level == l {
			delete(b.subConns, sc)
		}
	}
	b.levels[l.idx] = nil
}

func (b *localityBalancer) ResolverError(err error) {
	some := false
	for _, l := range b.levels {
		if l != nil {
			some = true
			l.child.ResolverError(err)
		}
	}
	if !some {
		b.cc.UpdateState(balancer.State{ConnectivityState: connectivity.TransientFailure, Picker: base.NewErrPicker(err)})
	}
}

func (b *localityBalancer) UpdateSubConnState(sc balancer.SubConn, s balancer.SubConnState) {
	if w, ok := sc.(*subConn); ok {
		w.level.child.UpdateSubConnState(w, s)
	}
}

func (b *localityBalancer) ExitIdle() {
	for _, l := range b.levels {
		if l != nil {
			l.child.ExitIdle()
		}
	}
}

func (b *localityBalancer) Close() {
	if b.stopReporting != nil {
		b.stopReporting()
	}
	if b.stopDescribing != nil {
		b.stopDescribing()
	}
	for _, l := range b.levels {
		if l != nil {
			l.child.Close()
		}
	}
}

// Shares returns each level's share of the calls, nearest first, given
// how many instances each level has (total) and how many are healthy,
// with the overprovisioning o and the panic threshold (percent; -1:
// never); panicking reports that locality is ignored.
func Shares(total, healthy [3]int, o, panicThreshold float64) (shares [3]float64, panicking bool) {
	var t, h int
	for i := range total {
		t += total[i]
		h += healthy[i]
	}
	switch {
	case t == 0:
		return shares, false
	case h == 0:
		// Nothing healthy: each level by its size, for its children's
		// errors (or their calls waiting to connect).
		for i := range total {
			shares[i] = float64(total[i]) / float64(t)
		}
		return shares, false
	case panicThreshold >= 0 && float64(h)*100 < panicThreshold*float64(t):
		for i := range total {
			shares[i] = float64(healthy[i]) / float64(h)
		}
		return shares, true
	}
	left := 1.0
	for i := range total {
		if total[i] == 0 {
			continue
		}
		s := min(left, o*float64(healthy[i])/float64(total[i]))
		shares[i] = s
		left -= s
	}
	if left > 1e-9 {
		for i := range shares {
			shares[i] /= 1 - left
		}
	}
	return shares, false
}

// regen publishes a picker over the levels, by their shares.
func (b *localityBalancer) regen() {
	if b.cfg == nil {
		return
	}
	healthyAddr := map[string]bool{}
	for sc := range b.subConns {
		if sc.healthy() {
			healthyAddr[sc.addr] = true
		}
	}
	var total, healthy [3]int
	for i, l := range b.levels {
		if l == nil {
			continue
		}
		for _, ep := range l.endpoints {
			total[i]++
			for _, a := range ep.Addresses {
				if healthyAddr[a.Addr] {
					healthy[i]++
					break
				}
			}
		}
	}
	shares, panicking := Shares(total, healthy, b.cfg.Overprovisioning, b.cfg.PanicThreshold)
	// Only levels whose child has given a picker take calls.
	var sum float64
	for i, l := range b.levels {
		if l == nil || !l.reported || l.state.Picker == nil {
			shares[i] = 0
		}
		sum += shares[i]
	}
	p := &picker{}
	state := connectivity.TransientFailure
	var best *level // the level whose state the channel shows without a ready one
	for i, l := range b.levels {
		if l == nil || !l.reported {
			continue
		}
		if best == nil || parent.Rank(l.state.ConnectivityState) > parent.Rank(best.state.ConnectivityState) {
			best = l
		}
		if shares[i] == 0 || sum == 0 {
			continue
		}
		p.add(l.state.Picker, shares[i]/sum)
		if l.state.ConnectivityState == connectivity.Ready {
			state = connectivity.Ready
		}
	}
	b.mu.Lock()
	entered := panicking && !b.panicking
	b.shares, b.panicking = shares, panicking
	if sum > 0 {
		for i := range b.shares {
			b.shares[i] /= sum
		}
	}
	b.mu.Unlock()
	if entered && b.metrics != nil {
		panicsMetric.Record(b.metrics, 1, b.target)
	}
	switch {
	case best == nil:
		return // no child has said anything yet
	case state == connectivity.Ready:
		b.cc.UpdateState(balancer.State{ConnectivityState: connectivity.Ready, Picker: p})
	default:
		b.cc.UpdateState(best.state)
	}
}

// picker chooses a level by its share, then its child's picker picks.
type picker struct {
	bounds  [3]uint64 // cumulative shares, in 1/2^32
	pickers [3]balancer.Picker
	n       int
	sum     float64
}

func (p *picker) add(child balancer.Picker, share float64) {
	p.sum += share
	p.bounds[p.n] = uint64(min(p.sum, 1) * (1 << 32))
	p.pickers[p.n] = child
	p.n++
}

func (p *picker) Pick(info balancer.PickInfo) (balancer.PickResult, error) {
	i := 0
	if p.n > 1 { // one level with every call, the usual case: no draw
		r := uint64(fastrand.Uint32())
		for i < p.n-1 && r >= p.bounds[i] {
			i++
		}
	}
	res, err := p.pickers[i].Pick(info)
	if sc, ok := res.SubConn.(*subConn); ok {
		res.SubConn = sc.SubConn // the parent's, as it gave it
	}
	return res, err
}

// levelCC is the ClientConn a level's child sees.
type levelCC struct {
	balancer.ClientConn
	b *localityBalancer
	l *level
}

// NewSubConn wraps the subchannel, to follow its health.
func (c *levelCC) NewSubConn(addrs []resolver.Address, opts balancer.NewSubConnOptions) (balancer.SubConn, error) {
	b := c.b
	sc := &subConn{b: b, level: c.l, conn: connectivity.Idle}
	if len(addrs) > 0 {
		sc.addr = parent.BaseAddr(addrs[0].Addr)
	}
	inner := opts.StateListener
	opts.StateListener = func(s balancer.SubConnState) {
		sc.conn = s.ConnectivityState
		if s.ConnectivityState != connectivity.Ready {
			sc.health = nil
		}
		if inner != nil {
			inner(s)
		} else {
			sc.level.child.UpdateSubConnState(sc, s)
		}
		if s.ConnectivityState == connectivity.Shutdown {
			delete(b.subConns, sc)
		}
		b.regen()
	}
	real, err := c.ClientConn.NewSubConn(addrs, opts)
	if err != nil {
		return nil, err
	}
	sc.SubConn = real
	b.subConns[sc] = true
	return sc, nil
}

// RegisterHealthListener passes the parent's health updates to the child,
// noting them.
func (sc *subConn) RegisterHealthListener(l func(balancer.SubConnState)) {
	sc.gen++
	gen := sc.gen
	sc.listening, sc.health = l != nil, nil
	if l == nil {
		sc.SubConn.RegisterHealthListener(nil)
		return
	}
	sc.SubConn.RegisterHealthListener(func(s balancer.SubConnState) {
		if sc.gen != gen {
			return
		}
		st := s.ConnectivityState
		sc.health = &st
		l(s)
		sc.b.regen()
	})
}

// UpdateState notes the level's state and publishes the parent's.
func (c *levelCC) UpdateState(s balancer.State) {
	c.l.state, c.l.reported = s, true
	c.b.regen()
}

// describe shows each instance's zone and level, with the level's share
// now: "zone us-east-1a, zone level (93%)".
func (b *localityBalancer) describe() map[string]string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]string, len(b.places))
	for addr, p := range maps.All(b.places) {
		zone := "no zone"
		if p.zone != "" {
			zone = "zone " + p.zone
		}
		out[addr] = fmt.Sprintf("%s, %s level (%.0f%%)", zone, Levels[p.level], b.shares[p.level]*100)
		if b.panicking {
			out[addr] += ", panic: locality ignored"
		}
	}
	return out
}

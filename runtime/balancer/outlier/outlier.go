// Package outlier takes instances that fail calls out of what a policy may
// pick, for a while, and puts them back: outlier ejection, as a parent
// policy ("lb_outlier") over any policy of this module or grpc-go's.
//
//	{"loadBalancingConfig":[{"lb_outlier":{"childPolicy":[{"round_robin":{}}]}}]}
//
// # How it composes
//
// It sits between the channel and the policy and wraps the subchannels the
// policy makes (as grpc-go's outlier_detection does, gRFC A50): an ejected
// instance's subchannels tell the policy, through the health listener the
// policy's pick_first leaves register, that they are in
// TRANSIENT_FAILURE. The policy leaves them out as it leaves out an
// instance that fails its client-side health check; its connections stay
// up, so coming back costs nothing. Every policy reads that signal, so
// ejection is written once: round_robin, lb_random, lb_p2c_ewma,
// lb_least_request and the weighted ones pick among the others,
// lb_consistent_hash and ring_hash move the ejected instance's keys to the
// next instance, lb_pick_first moves to the next instance of its order.
// Until the policy's new picker is out (a few microseconds), a pick that
// lands on an instance just ejected is made again.
//
// # What counts
//
// Each call's outcome comes from its pick's Done: a code of FailureCodes
// (by default what the server or the connection says of itself:
// UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL, UNKNOWN, DATA_LOSS,
// RESOURCE_EXHAUSTED; a connection that fails before any response ends
// the call with UNAVAILABLE) is a failure; CANCELED (the caller gave up,
// or lost a hedge) and a pick grpc-go did not use say nothing; any other
// outcome, an error of the caller's own (INVALID_ARGUMENT, NOT_FOUND,
// PERMISSION_DENIED, ...) included, is a success: the instance answered.
// Each attempt of a retried or hedged call counts for the instance it went
// to. Streams count when they end.
//
// # When an instance is out
//
//   - Consecutive failures (default 5, Envoy's and Finagle's): the
//     failure that completes the run ejects at once.
//   - Failure percentage (on by default: 20% of at least 50 calls): each
//     block of MinimumRequests calls an instance ends is judged as it
//     ends, and the instance ejected at once if Threshold% of the block
//     failed; at the Interval's end, the same judgement on all its calls
//     in the interval, whose count then starts again. It catches the gray instance that
//     fails a share of its calls but seldom 5 in a row (grpc-go's A50
//     failure-percentage check is off by default, and waits for the
//     interval's end).
//
// The n-th ejection of an instance lasts min(n × BaseEjectionTime,
// MaxEjectionTime), ±10% jitter so that the clients of a fleet do not
// send it their calls back at the same moment; n goes down by one each
// Interval the instance stays in, so one that fails again soon after it
// is back goes out for longer. There are no probe calls: when its time is
// up the instance takes its share again, and a run of failures sends it
// out again.
//
// At most MaxEjectedPercent of the instances are out at once (default 10%,
// at least one when there are two or more, never all): with every instance
// failing, calls still go out, to the ones not ejected.
//
// # Cost
//
// Pick allocates nothing: the outcome is counted with atomics on the
// instance, and a policy's own Done is chained through a pooled record.
package outlier

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	estats "google.golang.org/grpc/experimental/stats"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"
	"google.golang.org/grpc/status"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/describe"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/internal/parent"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/internal/clock"
)

// Name is the name of the balancer.
const Name = "lb_outlier"

// repicks bounds how often a pick is made again because it landed on an
// instance ejected since the policy's picker was made.
const repicks = 3

// The modes, as the lb.outlier.mode label names them.
const (
	ModeConsecutive = "consecutive_failures"
	ModePercentage  = "failure_percentage"
)

// clk is the time ejections are measured in; tests replace it with a
// clock.Fake.
var clk clock.Clock = clock.Real

func init() {
	balancer.Register(builder{})
}

// The metrics, off by default as grpc-go's LB metrics are (lb.WithMetrics
// turns them on). Labels: the channel's target without user info, and the
// mode from a fixed list.
var (
	ejectionsMetric = estats.RegisterInt64Count(estats.MetricDescriptor{
		Name:        "lb.outlier.ejections",
		Description: "EXPERIMENTAL. Instances a channel took out of rotation for failing calls, by mode: consecutive_failures, failure_percentage.",
		Unit:        "{ejection}",
		Labels:      []string{"grpc.target", "lb.outlier.mode"},
	})
	ejectionTimeMetric = estats.RegisterFloat64Histo(estats.MetricDescriptor{
		Name:        "lb.outlier.ejection_time",
		Description: "EXPERIMENTAL. How long each ejection was set to last.",
		Unit:        "s",
		Labels:      []string{"grpc.target", "lb.outlier.mode"},
		Bounds:      []float64{1, 5, 10, 30, 60, 120, 300, 600},
	})
	ejectedMetric = estats.RegisterInt64AsyncGauge(estats.MetricDescriptor{
		Name:        "lb.outlier.ejected",
		Description: "EXPERIMENTAL. Instances of a channel out of rotation now.",
		Unit:        "{instance}",
		Labels:      []string{"grpc.target"},
	})
)

// MetricNames are the names of the metrics above, for a channel's
// OpenTelemetry options.
var MetricNames = []string{"lb.outlier.ejections", "lb.outlier.ejection_time", "lb.outlier.ejected"}

type builder struct{}

func (builder) Name() string { return Name }

func (builder) ParseConfig(js json.RawMessage) (serviceconfig.LoadBalancingConfig, error) {
	return ParseConfig(js)
}

func (builder) Build(cc balancer.ClientConn, opts balancer.BuildOptions) balancer.Balancer {
	b := &outlierBalancer{
		cc:        cc,
		target:    parent.Target(opts),
		instances: map[string]*instance{},
		wake:      make(chan struct{}, 1),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
	}
	b.settings.Store(&settings{})
	b.child = parent.Balancer{CC: &wrapper{ClientConn: cc, b: b}, Opts: opts}
	if mr := cc.MetricsRecorder(); mr != nil {
		b.metrics = mr
		b.stopReporting = mr.RegisterAsyncReporter(estats.AsyncMetricReporterFunc(func(r estats.AsyncMetricsRecorder) error {
			ejectedMetric.Record(r, b.ejectedNow.Load(), b.target)
			return nil
		}), ejectedMetric)
	}
	if id, ok := describe.ChannelID(opts); ok {
		b.stopDescribing = describe.Register(id, Name, b.describe)
	}
	if built != nil {
		built(b)
	}
	go b.run()
	return b
}

// built, when a test sets it, is told of each balancer built.
var built func(*outlierBalancer)

// settings are what a call's Done reads of the config.
type settings struct {
	consecutive int64 // failures in a row that eject; 0: off
	percentage  bool  // count calls for the failure-percentage mode
	minimum     int64 // the failure-percentage mode's minimum requests
	threshold   int64 // and its threshold, in percent
	failure     [codes.Unauthenticated + 1]bool
}

// outlierBalancer is the parent. The channel calls it from its serializer;
// its own goroutine (run) tells the child of ejections and their ends.
// Every call into the child, from either, holds childMu.
type outlierBalancer struct {
	cc             balancer.ClientConn
	target         string
	metrics        estats.MetricsRecorder // nil without one
	stopReporting  func()                 // nil without metrics
	stopDescribing func()                 // nil without channelz
	settings       atomic.Pointer[settings]
	ejectedNow     atomic.Int64  // instances out, for the gauge
	pickers        atomic.Uint64 // counts the pickers made: each one's sequence number

	childMu sync.Mutex // serializes every call into the child, and guards subConn's fields
	child   parent.Balancer

	mu        sync.Mutex // guards the fields below; taken after childMu when both are
	cfg       *Config
	instances map[string]*instance // by each address of the resolver's endpoints
	count     int                  // endpoints in the resolver's last state
	lastSweep time.Time            // the last interval's end
	changed   bool                 // an ejection began or ended and the child is not told yet

	wake chan struct{} // run has work: changed, or the config's times
	stop chan struct{} // closed by Close
	done chan struct{} // closed when run returns
}

// instance is an endpoint of the resolver's state: what its calls say of
// it, and whether it is out.
type instance struct {
	b    *outlierBalancer
	name string // its first address, for the page

	out      atomic.Bool   // ejected: picks avoid it
	outSince atomic.Uint64 // the sequence number of the last picker made before it went out
	streak   atomic.Int64  // failures in a row
	calls    atomic.Int64  // calls that ended this interval (percentage mode)
	failures atomic.Int64  // of which failed
	// blockStart is failures when the current block of MinimumRequests
	// calls began.
	blockStart atomic.Int64

	// Guarded by b.mu.
	until     time.Time // when the ejection ends; zero while in
	ejections int       // the multiplier of the next ejection's length, less one
	recent    bool      // ejected during the current interval
	subConns  map[*subConn]bool
}

// subConn is a subchannel the child made: the parent's, and the instance
// it dials.
type subConn struct {
	balancer.SubConn
	b         *outlierBalancer
	inst      *instance
	done      func(balancer.DoneInfo) // inst.record, bound once
	listening atomic.Bool             // the child listens for its health

	// Guarded by b.childMu.
	listener func(balancer.SubConnState) // the child's health listener
	gen      int                         // counts RegisterHealthListener calls
	health   *balancer.SubConnState      // the last health the parent told; nil before any
	shownOut bool                        // the child was told TRANSIENT_FAILURE for an ejection
}

// errEjected is the connection error an ejected subchannel reports.
var errEjected = errors.New("lb_outlier: the instance is ejected for failing calls")

func (b *outlierBalancer) UpdateClientConnState(s balancer.ClientConnState) error {
	cfg, ok := s.BalancerConfig.(*Config)
	if !ok {
		return fmt.Errorf("%s: no config", Name)
	}
	st := &settings{percentage: cfg.FailurePercentage != nil}
	if fp := cfg.FailurePercentage; fp != nil {
		st.minimum, st.threshold = int64(max(fp.MinimumRequests, 1)), int64(fp.Threshold)
	}
	if cfg.ConsecutiveFailures > 0 {
		st.consecutive = int64(cfg.ConsecutiveFailures)
	}
	for _, c := range cfg.FailureCodes {
		if int(c) < len(st.failure) {
			st.failure[c] = true
		}
	}
	b.settings.Store(st)

	b.childMu.Lock()
	defer b.childMu.Unlock()
	b.mu.Lock()
	first := b.cfg == nil
	b.cfg = cfg
	if first {
		b.lastSweep = clk.Now()
	}
	seen := make(map[string]*instance, len(s.ResolverState.Endpoints))
	for _, ep := range s.ResolverState.Endpoints {
		if len(ep.Addresses) == 0 {
			continue
		}
		// An endpoint is one instance, whichever of its addresses a
		// subchannel dials.
		var in *instance
		for _, a := range ep.Addresses {
			if in = b.instances[a.Addr]; in != nil {
				break
			}
		}
		if in == nil {
			in = &instance{b: b, name: ep.Addresses[0].Addr, subConns: map[*subConn]bool{}}
		}
		for _, a := range ep.Addresses {
			seen[a.Addr] = in
		}
	}
	for addr, in := range b.instances {
		if seen[addr] == nil && in.out.CompareAndSwap(true, false) {
			b.ejectedNow.Add(-1) // gone: it frees its place among the ejected
		}
	}
	b.instances = seen
	b.count = len(s.ResolverState.Endpoints)
	b.mu.Unlock()
	b.signal()
	return b.child.Update(cfg.Child, balancer.ClientConnState{ResolverState: s.ResolverState})
}

func (b *outlierBalancer) ResolverError(err error) {
	b.childMu.Lock()
	defer b.childMu.Unlock()
	b.child.ResolverError(err)
}

func (b *outlierBalancer) UpdateSubConnState(sc balancer.SubConn, s balancer.SubConnState) {
	b.childMu.Lock()
	defer b.childMu.Unlock()
	b.child.UpdateSubConnState(sc, s)
}

func (b *outlierBalancer) ExitIdle() {
	b.childMu.Lock()
	defer b.childMu.Unlock()
	b.child.ExitIdle()
}

func (b *outlierBalancer) Close() {
	close(b.stop)
	<-b.done
	if b.stopReporting != nil {
		b.stopReporting()
	}
	if b.stopDescribing != nil {
		b.stopDescribing()
	}
	b.childMu.Lock()
	defer b.childMu.Unlock()
	b.child.Close()
}

// signal wakes run.
func (b *outlierBalancer) signal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// run ends ejections when they are due, judges each interval, and tells
// the child of every change, until Close.
func (b *outlierBalancer) run() {
	defer close(b.done)
	for {
		b.mu.Lock()
		wait := b.nextLocked(clk.Now())
		b.mu.Unlock()
		t := clk.NewTimer(wait)
		select {
		case <-b.stop:
			t.Stop()
			return
		case <-b.wake:
			t.Stop()
		case <-t.C():
		}
		b.tick()
	}
}

// nextLocked is how long run may wait: until the next ejection ends or the
// interval does.
func (b *outlierBalancer) nextLocked(now time.Time) time.Duration {
	if b.cfg == nil {
		return time.Hour
	}
	next := b.lastSweep.Add(b.cfg.Interval)
	for _, in := range b.instances {
		if !in.until.IsZero() && in.until.Before(next) {
			next = in.until
		}
	}
	return max(next.Sub(now), 0)
}

// tick ends the ejections that are due, judges the interval if it is
// over, and tells the child what changed.
func (b *outlierBalancer) tick() {
	b.childMu.Lock()
	defer b.childMu.Unlock()
	b.mu.Lock()
	if b.cfg == nil {
		b.mu.Unlock()
		return
	}
	now := clk.Now()
	for _, in := range b.unique() {
		if !in.until.IsZero() && !now.Before(in.until) {
			in.until = time.Time{}
			in.streak.Store(0)
			in.calls.Store(0)
			in.failures.Store(0)
			in.blockStart.Store(0)
			in.out.Store(false)
			b.ejectedNow.Add(-1)
			b.changed = true
		}
	}
	if !now.Before(b.lastSweep.Add(b.cfg.Interval)) {
		b.sweepLocked(now)
		b.lastSweep = now
	}
	var tell []*subConn
	if b.changed {
		b.changed = false
		for _, in := range b.unique() {
			for sc := range in.subConns {
				if sc.shownOut != in.out.Load() {
					tell = append(tell, sc)
				}
			}
		}
	}
	b.mu.Unlock()
	for _, sc := range tell {
		sc.show()
	}
}

// unique returns each instance once (an endpoint of several addresses is
// in the map under each).
func (b *outlierBalancer) unique() []*instance {
	out := make([]*instance, 0, b.count)
	seen := make(map[*instance]bool, b.count)
	for _, in := range b.instances {
		if !seen[in] {
			seen[in] = true
			out = append(out, in)
		}
	}
	return out
}

// sweepLocked ends an interval: the failure-percentage mode judges it, and
// the ejection count of each instance that stayed in decays.
func (b *outlierBalancer) sweepLocked(now time.Time) {
	fp := b.cfg.FailurePercentage
	for _, in := range b.unique() {
		calls, failures := in.calls.Swap(0), in.failures.Swap(0)
		in.blockStart.Store(0)
		if in.out.Load() {
			continue
		}
		if !in.recent && in.ejections > 0 {
			in.ejections--
		}
		in.recent = false
		if fp != nil && calls >= int64(fp.MinimumRequests) && failures*100 >= int64(fp.Threshold)*calls && b.roomLocked() {
			b.ejectLocked(in, ModePercentage, now)
		}
	}
}

// roomLocked reports whether one more instance may be ejected: fewer than
// MaxEjectedPercent of them are out (at least one may be when there are
// two or more), and never the last one in.
func (b *outlierBalancer) roomLocked() bool {
	limit := b.count * b.cfg.MaxEjectedPercent / 100
	if limit < 1 && b.count >= 2 {
		limit = 1
	}
	limit = min(limit, b.count-1)
	return b.ejectedNow.Load() < int64(limit)
}

// ejectLocked takes in out.
func (b *outlierBalancer) ejectLocked(in *instance, mode string, now time.Time) {
	in.ejections++
	d := min(time.Duration(in.ejections)*b.cfg.BaseEjectionTime, b.cfg.MaxEjectionTime)
	d = time.Duration(float64(d) * (0.9 + 0.2*rand.Float64()))
	in.until = now.Add(d)
	in.recent = true
	in.streak.Store(0)
	in.outSince.Store(b.pickers.Load())
	in.out.Store(true)
	b.ejectedNow.Add(1)
	b.changed = true
	if b.metrics != nil {
		ejectionsMetric.Record(b.metrics, 1, b.target, mode)
		ejectionTimeMetric.Record(b.metrics, d.Seconds(), b.target, mode)
	}
}

// failedInARow is called by a Done whose failure made a run of
// ConsecutiveFailures: it ejects the instance if there is room.
func (b *outlierBalancer) failedInARow(in *instance) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cfg == nil || in.out.Load() || b.instances[in.name] != in || !b.roomLocked() {
		return
	}
	b.ejectLocked(in, ModeConsecutive, clk.Now())
	b.signal()
}

// failedTooOften is called by a Done that brought the instance's calls
// in the interval to a multiple of MinimumRequests with Threshold% of
// them failed: it ejects the instance if there is room.
func (b *outlierBalancer) failedTooOften(in *instance) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cfg == nil || in.out.Load() || b.instances[in.name] != in || !b.roomLocked() {
		return
	}
	b.ejectLocked(in, ModePercentage, clk.Now())
	b.signal()
}

// record counts a call's outcome for the instance it went to: a Done.
func (in *instance) record(di balancer.DoneInfo) {
	st := in.b.settings.Load()
	var code codes.Code
	switch err := di.Err; {
	case err == nil:
		if !di.BytesSent && !di.BytesReceived {
			return // a pick grpc-go did not use (its transport was not ready)
		}
	case err == parent.ErrNotUsed:
		return
	default:
		if se, ok := err.(interface{ GRPCStatus() *status.Status }); ok {
			code = se.GRPCStatus().Code()
		} else {
			code = status.Code(err)
		}
	}
	if code == codes.Canceled {
		return
	}
	failed := int(code) < len(st.failure) && st.failure[code]
	if st.percentage {
		var f int64
		if failed {
			f = in.failures.Add(1)
		}
		if n := in.calls.Add(1); n%st.minimum == 0 {
			// A block of MinimumRequests calls ended: judge its own
			// failures, so that the calls before a failure began do not
			// dilute it.
			if !failed {
				f = in.failures.Load()
			}
			block := f - in.blockStart.Swap(f)
			if block*100 >= st.threshold*st.minimum && !in.out.Load() {
				in.b.failedTooOften(in)
			}
		}
	}
	if !failed {
		if in.streak.Load() != 0 {
			in.streak.Store(0)
		}
		return
	}
	if st.consecutive > 0 && in.streak.Add(1) >= st.consecutive && !in.out.Load() {
		in.b.failedInARow(in)
	}
}

// show tells the child whether sc's instance is out, if it listens for
// health. b.childMu is held.
func (sc *subConn) show() {
	out := sc.inst.out.Load()
	sc.shownOut = out
	if sc.listener == nil {
		return
	}
	switch {
	case out:
		sc.listener(balancer.SubConnState{ConnectivityState: connectivity.TransientFailure, ConnectionError: errEjected})
	case sc.health != nil:
		sc.listener(*sc.health)
	}
}

// RegisterHealthListener stands between the child's health listener and
// the parent's: the parent's updates reach the child unless the instance
// is out. Called by the child, so with b.childMu held.
func (sc *subConn) RegisterHealthListener(l func(balancer.SubConnState)) {
	sc.gen++
	gen := sc.gen
	sc.listener, sc.health = l, nil
	sc.listening.Store(l != nil)
	if l == nil {
		sc.SubConn.RegisterHealthListener(nil)
		return
	}
	sc.SubConn.RegisterHealthListener(func(s balancer.SubConnState) {
		sc.b.childMu.Lock()
		defer sc.b.childMu.Unlock()
		if sc.gen != gen {
			return
		}
		sc.health = &s
		if sc.shownOut {
			return
		}
		sc.listener(s)
	})
	if sc.inst.out.Load() {
		// Out before the child listened: say so first.
		sc.show()
	}
}

// wrapper is the ClientConn the child sees.
type wrapper struct {
	balancer.ClientConn
	b *outlierBalancer
}

// NewSubConn wraps the parent's subchannel so that picks and health pass
// through the instance it dials. Called by the child, with b.childMu held.
func (w *wrapper) NewSubConn(addrs []resolver.Address, opts balancer.NewSubConnOptions) (balancer.SubConn, error) {
	b := w.b
	sc := &subConn{b: b}
	l := opts.StateListener
	opts.StateListener = func(s balancer.SubConnState) {
		b.childMu.Lock()
		defer b.childMu.Unlock()
		if l != nil {
			l(s)
		} else {
			// A child without a listener (deprecated in grpc-go)
			// hears of its subchannel as it knows it.
			b.child.UpdateSubConnState(sc, s)
		}
		if s.ConnectivityState == connectivity.Shutdown {
			b.mu.Lock()
			delete(sc.inst.subConns, sc)
			b.mu.Unlock()
		}
	}
	inner, err := w.ClientConn.NewSubConn(addrs, opts)
	if err != nil {
		return nil, err
	}
	sc.SubConn = inner
	b.mu.Lock()
	var in *instance
	for _, a := range addrs {
		if in = b.instances[a.Addr]; in != nil {
			break
		}
	}
	if in == nil {
		// An address the resolver did not give (a policy dialing on its
		// own): an instance of its own, never in the count.
		name := ""
		if len(addrs) > 0 {
			name = addrs[0].Addr
		}
		in = &instance{b: b, name: name, subConns: map[*subConn]bool{}}
	}
	sc.inst = in
	in.subConns[sc] = true
	b.mu.Unlock()
	sc.done = in.record
	return sc, nil
}

// UpdateState wraps the child's picker.
func (w *wrapper) UpdateState(s balancer.State) {
	if s.Picker != nil {
		s.Picker = &picker{child: s.Picker, seq: w.b.pickers.Add(1)}
	}
	w.ClientConn.UpdateState(s)
}

// picker makes the child's picks, again when one lands on an instance
// ejected since the child's picker was made, and counts each call's
// outcome for the instance it went to.
type picker struct {
	child balancer.Picker
	seq   uint64 // its sequence number among the balancer's pickers
}

func (p *picker) Pick(info balancer.PickInfo) (balancer.PickResult, error) {
	for i := 0; ; i++ {
		res, err := p.child.Pick(info)
		if err != nil {
			return res, err
		}
		sc, ok := res.SubConn.(*subConn)
		if !ok {
			return res, nil
		}
		// A picker made before the instance went out does not know it
		// yet: pick again, and if the child keeps to it (pick_first, a
		// key's instance), wait for the child's next picker, which
		// comes as soon as the child is told. A picker made since, or a
		// child that does not listen for health, is followed.
		if sc.inst.out.Load() && p.seq <= sc.inst.outSince.Load() && sc.listening.Load() {
			if res.Done != nil {
				res.Done(balancer.DoneInfo{Err: parent.ErrNotUsed})
			}
			if i < repicks {
				continue
			}
			return balancer.PickResult{}, balancer.ErrNoSubConnAvailable
		}
		res.SubConn = sc.SubConn
		if res.Done == nil {
			res.Done = sc.done
		} else {
			c := chains.Get().(*chain)
			c.inst, c.next = sc.inst, res.Done
			res.Done = c.fn
		}
		return res, nil
	}
}

// chain is the Done of a pick whose policy has a Done of its own: it
// counts the outcome and calls the policy's. Pooled, so that a pick
// allocates nothing; grpc-go calls a Done once.
type chain struct {
	inst *instance
	next func(balancer.DoneInfo)
	fn   func(balancer.DoneInfo) // c.done, bound once
}

var chains sync.Pool // of *chain

func init() {
	chains.New = func() any {
		c := &chain{}
		c.fn = c.done
		return c
	}
}

func (c *chain) done(di balancer.DoneInfo) {
	inst, next := c.inst, c.next
	c.inst, c.next = nil, nil
	chains.Put(c)
	next(di)
	inst.record(di)
}

// describe shows each instance out: "ejected until 15:04:05 (2nd time)".
func (b *outlierBalancer) describe() map[string]string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[string]string{}
	for _, in := range b.unique() {
		if in.out.Load() && !in.until.IsZero() {
			out[in.name] = fmt.Sprintf("ejected until %s (%s time)", in.until.Format("15:04:05"), ordinal(in.ejections))
		}
	}
	return out
}

// ordinal is "1st", "2nd", "3rd", "4th", ...
func ordinal(n int) string {
	suffix := "th"
	switch {
	case n%100 >= 11 && n%100 <= 13:
	case n%10 == 1:
		suffix = "st"
	case n%10 == 2:
		suffix = "nd"
	case n%10 == 3:
		suffix = "rd"
	}
	return fmt.Sprintf("%d%s", n, suffix)
}

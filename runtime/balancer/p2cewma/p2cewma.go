// Package p2cewma is a latency-aware balancer: power of two choices over the
// ready endpoints, each scored by a peak-sensitive, exponentially weighted
// moving average of its call latency times its calls in flight plus one
// (peak EWMA, as in Finagle and Linkerd; go-zero's default policy).
//
// Importing it registers the "lb_p2c_ewma" policy (not "p2c_ewma", which
// go-zero registers: grpc-go keeps one balancer per name and the last
// registration wins):
//
//	grpc.NewClient(target,
//		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"lb_p2c_ewma":{"decay":"1s"}}]}`), ...)
//
// How it scores:
//   - A latency above the average replaces it at once (peak); one below
//     pulls it down with the weight exp(-Δt/decay), Δt the time since the
//     endpoint's last sample: the average forgets at the same pace whatever
//     the call rate.
//   - A call that fails with UNAVAILABLE, DEADLINE_EXCEEDED,
//     RESOURCE_EXHAUSTED, INTERNAL or UNKNOWN counts as at least
//     FailurePenalty.
//   - An endpoint without a sample yet scores as the average of those that
//     have one: no cold-start flood, no starvation.
//   - An endpoint not picked for Probe (default 3 s) is picked when it is
//     one of the two choices, and that probe's latency replaces its
//     average: a slow endpoint that became fast again gets its share back
//     at its next probe, while a slow one costs one call per Probe (0.03% of
//     1,000 calls a second), whatever the decay.
//
// Streams are not latencies. The methods of Config.Streams (the generated
// client lists every streaming method of the service) are never timed: a
// 2 s watch would otherwise become its endpoint's average and send it no
// unary call until its next probe. A stream counts in flight while it
// lasts (so endpoints holding many streams get fewer new calls), and
// counts FailurePenalty when it fails. Without Streams (grpc.NewClient
// with a hand-written config), a stream is timed like a unary call.
//
// What to expect from equal backends: p2c herds. One sequential caller has
// no call in flight to compare, so each pick goes by the latency average
// alone, and a backend whose one sample came out high (a GC pause, a cold
// connection) gets few calls until the decay forgets it: over a few
// hundred calls a 90/10 split between identical backends is normal, and
// it evens out over seconds (a unit test measured a backend of 5 at 9% to
// 30% of 20,000 calls, 20% on average). With many callers the calls in
// flight even the shares out. Use round robin when an even split matters
// more than steering away from slow backends.
//
// Reading the clock costs more than the rest of a pick and its Done (about
// 28 ns a reading on a VM, two a timed call), so not every call is timed:
//   - one call in SampleEvery, drawn at random;
//   - every call to an endpoint without a sample yet;
//   - every call to an endpoint whose last sample is more than decay/4
//     older than the process's latest clock reading, so that at low rates
//     most calls are (1.6 clock readings a call at 10 calls a second over
//     10 endpoints, against 0.5 at 1,000);
//   - every probe.
//
// A pick that was not used says nothing: one a parent policy threw away,
// or one grpc-go could not use (its Done has no error and no BytesSent).
// A failed call that was not timed counts FailurePenalty at once (one
// clock reading, for the time of the sample); a timed one counts its
// latency, or FailurePenalty if that is more. At 1,000 calls a second over
// 10 endpoints that is 25 samples a second each, 25 within the decay,
// drawn at random among the calls. An untimed call still counts in
// flight, which is what the score reacts to first.
//
// A pick allocates nothing, whether or not its Done is called: each
// endpoint has TimedSlots slots for its timed calls in flight, and a Done
// made once for each slot and one for untimed calls. A call that should
// be timed while every slot is taken (more than TimedSlots timed calls in
// flight to one endpoint) goes untimed: the calls in those slots will give
// their samples. But calls that hold their slots for long (long-lived
// streams, picks whose Done never came) would leave the endpoint
// unmeasured: once a slot has been held for HeldDecays times the decay
// while all are taken, a call that should be timed gets a record of its
// own (one allocation) instead.
// It is built like grpc-go's round_robin: endpointsharding keeps one
// pick_first child per endpoint (so client-side health checking works),
// and the picker chooses among the READY children.
package p2cewma

import (
	"encoding/json"
	"fmt"
	"math"
	"sync/atomic"
	"time"
	"unsafe"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/codes"
	estats "google.golang.org/grpc/experimental/stats"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"
	"google.golang.org/grpc/status"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/internal/fastrand"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/internal/parent"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/internal/ready"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/internal/clock"
)

// Name is the name of the balancer.
const Name = "lb_p2c_ewma"

// Defaults.
const (
	// DefaultDecay is the time constant of the latency average.
	DefaultDecay = time.Second
	// FailurePenalty is the least latency a failed call counts for.
	FailurePenalty = 250 * time.Millisecond
	// DefaultProbe is how long an endpoint goes unpicked before it is
	// picked to be measured again.
	DefaultProbe = 3 * time.Second
	// SampleEvery: one call in SampleEvery is timed, drawn at random,
	// besides those that must be.
	SampleEvery = 4
	// TimedSlots is how many timed calls one endpoint can have in flight
	// without allocating.
	TimedSlots = 4
	// HeldDecays: once a timed call has been in flight for HeldDecays
	// times the decay while every slot is taken, a call that should be
	// timed is timed with a record of its own.
	HeldDecays = 10
)

func init() {
	balancer.Register(builder{})
}

// Config is the balancer's configuration.
type Config struct {
	serviceconfig.LoadBalancingConfig `json:"-"`

	// Decay is the time constant of the latency average; default
	// DefaultDecay.
	Decay time.Duration
	// Probe is how long an endpoint goes unpicked before it is picked to
	// be measured again; default DefaultProbe.
	Probe time.Duration
	// Streams are the full names ("/pkg.Svc/Watch") of the methods that
	// stream (client, server or both): their durations are not latencies
	// (a 2 s watch is not a slow call), so they are never timed. They
	// count in flight while they last, and a stream that fails counts
	// FailurePenalty. The generated client lists the service's streaming
	// methods here.
	Streams []string
}

// BalancerName returns Name.
func (Config) BalancerName() string { return Name }

// BalancerConfig returns {"decay": "<Decay>", "probe": "<Probe>",
// "streams": [...]} with the settings that are set.
func (c Config) BalancerConfig() any {
	m := map[string]any{}
	if c.Decay != 0 {
		m["decay"] = c.Decay.String()
	}
	if c.Probe != 0 {
		m["probe"] = c.Probe.String()
	}
	if len(c.Streams) > 0 {
		m["streams"] = c.Streams
	}
	return m
}

// ParseConfig reads {"decay": "<duration>", "probe": "<duration>",
// "streams": ["/pkg.Svc/Watch", ...]}: defaults first, then the JSON,
// then checks.
func ParseConfig(js json.RawMessage) (*Config, error) {
	cfg := &Config{Decay: DefaultDecay, Probe: DefaultProbe}
	var raw struct {
		Decay   *string  `json:"decay"`
		Probe   *string  `json:"probe"`
		Streams []string `json:"streams"`
	}
	if len(js) > 0 {
		if err := json.Unmarshal(js, &raw); err != nil {
			return nil, fmt.Errorf("%s: config %s: %w", Name, js, err)
		}
	}
	if raw.Decay != nil {
		d, err := time.ParseDuration(*raw.Decay)
		if err != nil {
			return nil, fmt.Errorf("%s: decay %q: %w", Name, *raw.Decay, err)
		}
		cfg.Decay = d
	}
	if raw.Probe != nil {
		d, err := time.ParseDuration(*raw.Probe)
		if err != nil {
			return nil, fmt.Errorf("%s: probe %q: %w", Name, *raw.Probe, err)
		}
		cfg.Probe = d
	}
	cfg.Streams = raw.Streams
	if err := cfg.check(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Validate reports a Decay or Probe that is not positive; 0 is the
// default, as BalancerConfig leaves it out. protoc-gen-go-lb calls it on
// the Config it generates.
func (c Config) Validate() error {
	if c.Decay == 0 {
		c.Decay = DefaultDecay
	}
	if c.Probe == 0 {
		c.Probe = DefaultProbe
	}
	return c.check()
}

// check validates c once its defaults are applied.
func (c *Config) check() error {
	if c.Decay <= 0 {
		return fmt.Errorf("%s: decay %v must be positive", Name, c.Decay)
	}
	if c.Probe <= 0 {
		return fmt.Errorf("%s: probe %v must be positive", Name, c.Probe)
	}
	return nil
}

type builder struct{}

func (builder) Name() string { return Name }

func (builder) ParseConfig(js json.RawMessage) (serviceconfig.LoadBalancingConfig, error) {
	return ParseConfig(js)
}

// scoreMetric is the policy's own signal, off by default as grpc-go's LB
// metrics are (lb.WithMetrics turns it on): each endpoint's score, reported
// when the channel's metrics are collected. Its lb.instance label is the
// address of an endpoint the channel has now, so its values are bounded by
// the number of instances.
var scoreMetric = estats.RegisterInt64AsyncGauge(estats.MetricDescriptor{
	Name:        "lb.p2c_ewma.score",
	Description: "EXPERIMENTAL. An endpoint's p2c_ewma score: its latency average times its calls in flight plus one (the lower, the more calls it gets).",
	Unit:        "us",
	Labels:      []string{"grpc.target", "lb.instance"},
})

// MetricNames are the names of the policy's metrics, for a channel's
// OpenTelemetry options.
var MetricNames = []string{"lb.p2c_ewma.score"}

func report(r estats.AsyncMetricsRecorder, target, addr string, st *stats) {
	v := math.Float64frombits(st.ewma.Load()) * float64(st.inflight.Load()+1)
	scoreMetric.Record(r, int64(v/1e3), target, addr)
}

func (builder) Build(cc balancer.ClientConn, opts balancer.BuildOptions) balancer.Balancer {
	rep := ready.Reporter[stats]{Metrics: []estats.AsyncMetric{scoreMetric}, Report: report}
	return ready.NewReportingBalancer(cc, opts, func(children []ready.Child[stats], cfg serviceconfig.LoadBalancingConfig) balancer.Picker {
		decay, probe := DefaultDecay, DefaultProbe
		var streams map[string]bool
		if c, ok := cfg.(*Config); ok {
			decay, probe = c.Decay, c.Probe
			for _, m := range c.Streams {
				if streams == nil {
					streams = map[string]bool{}
				}
				streams[m] = true
			}
		}
		cs := make([]child, len(children))
		for i, c := range children {
			cs[i] = child{picker: c.Picker, st: c.State}
		}
		p := newPicker(cs, decay, probe)
		p.streams = streams
		return p
	}, rep)
}

// stats are one endpoint's numbers, updated without locks by concurrent
// calls (a lost update only skews one sample), and the Dones of its calls,
// made once by Init.
//
// It fills a cache line pair of its own, so that calls to one endpoint do
// not slow those to its neighbours in memory: the first line holds what
// calls write, the second what they only read.
type stats struct {
	ewma     atomic.Uint64 // float64 bits: the latency average in ns; 0 before the first sample
	last     atomic.Int64  // when the last sample was taken (clk.Nanotime)
	picked   atomic.Int64  // when the endpoint was last picked (clk.Nanotime)
	inflight atomic.Int64
	// slot[k] is 0 while slot k is free; with a timed call in flight it
	// is the call's pick time (clk.Nanotime) << 2, | 2 if the call is a probe,
	// | 1.
	slot [TimedSlots]atomic.Int64

	rate atomic.Uint64 // float64 bits: 1/decay in 1/ns, of the latest picker
	// done[k] finishes slot k's call; done[TimedSlots] an untimed call.
	done [TimedSlots + 1]func(balancer.DoneInfo)
	_    [128 - 32 - TimedSlots*8 - 8 - (TimedSlots+1)*unsafe.Sizeof(uintptr(0))]byte
}

// Init makes the Dones of the endpoint's calls.
func (s *stats) Init() {
	for k := range TimedSlots {
		s.done[k] = func(di balancer.DoneInfo) { s.finishTimed(k, di) }
	}
	s.done[TimedSlots] = s.finishUntimed
}

// Describe shows the endpoint's numbers on the live page: the latency
// average and the calls in flight, whose product (+1) is its score.
func (s *stats) Describe(resolver.Endpoint) string {
	n := s.inflight.Load()
	v := math.Float64frombits(s.ewma.Load())
	if v == 0 {
		return fmt.Sprintf("latency no sample yet, in flight %d", n)
	}
	return fmt.Sprintf("latency %v, in flight %d", time.Duration(v).Round(time.Microsecond), n)
}

// time takes a free slot for a call picked now (reading the clock only if
// one is free) and returns its Done. If every slot is taken, the call is
// untimed, unless one of them has been taken for longer than held (a
// long-lived stream, a pick whose Done never came): then the call is timed
// with a record of its own, one allocation, so that the endpoint is still
// measured.
func (s *stats) time(probe bool, now, held int64) func(balancer.DoneInfo) {
	var v int64
	stuck := false
	for k := range s.slot {
		if w := s.slot[k].Load(); w != 0 {
			stuck = stuck || now-w>>2 > held
			continue
		}
		if v == 0 {
			v = readClock()<<2 | 1
			if probe {
				v |= 2
			}
		}
		if s.slot[k].CompareAndSwap(0, v) {
			return s.done[k]
		}
	}
	if !stuck {
		return s.done[TimedSlots]
	}
	start := readClock()
	return func(di balancer.DoneInfo) {
		s.sample(start, probe, di)
		s.inflight.Add(-1)
	}
}

// finishTimed is the Done of the timed call in slot k.
func (s *stats) finishTimed(k int, di balancer.DoneInfo) {
	v := s.slot[k].Load()
	s.sample(v>>2, v&2 != 0, di)
	s.slot[k].Store(0)
	s.inflight.Add(-1)
}

// sample takes the latency of a timed call picked at start.
func (s *stats) sample(start int64, probe bool, di balancer.DoneInfo) {
	if unsent(di) {
		return
	}
	end := readClock()
	rtt := float64(end - start)
	if penalized(di.Err) {
		rtt = max(rtt, float64(FailurePenalty))
	}
	s.observe(rtt, end, math.Float64frombits(s.rate.Load()), probe)
}

// finishUntimed is the Done of an untimed call.
func (s *stats) finishUntimed(di balancer.DoneInfo) {
	if !unsent(di) && penalized(di.Err) {
		s.observe(float64(FailurePenalty), readClock(), math.Float64frombits(s.rate.Load()), false)
	}
	s.inflight.Add(-1)
}

// observe takes one call's latency rtt (ns), done at now; a probe's
// replaces the average.
//
// rate is 1/decay, in 1/ns.
func (s *stats) observe(rtt float64, now int64, rate float64, probe bool) {
	old := math.Float64frombits(s.ewma.Load())
	prev := s.last.Swap(now)
	v := rtt
	if old != 0 && rtt < old && !probe {
		w := expNeg(float64(now-prev) * rate)
		v = old*w + rtt*(1-w)
	}
	s.ewma.Store(math.Float64bits(v))
}

// expNeg is e^-x for x ≥ 0, near enough for a weight (within 1% of it
// up to x = 3, 0.002 absolute beyond) at a third of math.Exp's cost:
// (e^-(x/4))^4, with e^(x/4) from its Taylor polynomial to the 4th power.
func expNeg(x float64) float64 {
	if x <= 0 {
		return 1
	}
	if x > 40 {
		return 0
	}
	y := x / 4
	w := 1 / (1 + y*(1+y*(0.5+y*(1.0/6+y*(1.0/24)))))
	w *= w
	return w * w
}

type child struct {
	picker balancer.Picker
	st     *stats
}

type picker struct {
	children []child
	stale    int64           // ns: calls to an endpoint without a sample this long are timed
	held     int64           // ns: a timed call in flight this long no longer keeps others untimed
	force    int64           // ns: an endpoint not picked this long is picked (a probe) when drawn
	neutral  float64         // the score base of endpoints without a sample
	streams  map[string]bool // methods never timed (Config.Streams); nil for none
}

func newPicker(children []child, decay, probe time.Duration) *picker {
	p := &picker{children: children, stale: int64(decay) / 4, held: HeldDecays * int64(decay), force: int64(probe)}
	rate := math.Float64bits(1 / float64(decay))
	var sum float64
	var n int
	for _, c := range children {
		c.st.rate.Store(rate)
		if v := math.Float64frombits(c.st.ewma.Load()); v > 0 {
			sum += v
			n++
		}
	}
	p.neutral = 1 // with no sample at all, only calls in flight count
	if n > 0 {
		p.neutral = sum / float64(n)
	}
	return p
}

// score is the endpoint's expected cost: latency times calls in flight + 1.
func (p *picker) score(st *stats) float64 {
	v := math.Float64frombits(st.ewma.Load())
	if v == 0 {
		v = p.neutral
	}
	return v * float64(st.inflight.Load()+1)
}

// clk is the clock picks and Dones read (Nanotime); tests replace it with
// a clock.Fake.
var clk clock.Clock = clock.Real

// lastRead is a recent reading of the clock by any picker of the process,
// at most readStep old when calls are timed, behind by up to a few calls
// when they are not, and never set back: the time for deciding on probes
// and staleness, which need no precision.
var lastRead atomic.Int64

// readStep is how far the clock moves before lastRead is written again: so
// that timed calls on many cores do not all write one cache line.
const readStep = int64(100 * time.Microsecond)

// readClock reads the clock and keeps lastRead recent. One compare-and-swap:
// if it fails, another reading, as recent, won.
func readClock() int64 {
	now := clk.Nanotime()
	if last := lastRead.Load(); now-last > readStep {
		lastRead.CompareAndSwap(last, now)
	}
	return now
}

func (p *picker) Pick(info balancer.PickInfo) (balancer.PickResult, error) {
	now := lastRead.Load()
	// One random number draws the two endpoints and whether the call is
	// timed (bits 0-1, which Pair barely uses).
	r := fastrand.Uint64()
	// A stream is never timed, and never a probe: its duration is not a
	// latency.
	stream := p.streams != nil && p.streams[info.FullMethodName]
	c, probe := p.children[0], false
	if n := len(p.children); n > 1 {
		i, j := fastrand.Pair(r, n)
		a, b := p.children[i], p.children[j]
		// An endpoint due for a probe is picked by one call only.
		pa, pb := a.st.picked.Load(), b.st.picked.Load()
		switch {
		case !stream && now-pa > p.force && a.st.picked.CompareAndSwap(pa, now):
			c, probe = a, true
		case !stream && now-pb > p.force && b.st.picked.CompareAndSwap(pb, now):
			c, probe = b, true
		case p.score(b.st) < p.score(a.st):
			c = b
		default:
			c = a
		}
	}
	res, err := c.picker.Pick(info)
	if err != nil {
		return res, err
	}
	st := c.st
	done := st.done[TimedSlots]
	last := st.last.Load() // 0: no sample yet
	if !stream && (probe || r%SampleEvery == 0 || last == 0 || now-last > p.stale) {
		done = st.time(probe, now, p.held)
	}
	st.picked.Store(now)
	st.inflight.Add(1)
	if inner := res.Done; inner != nil { // not grpc-go's pick_first: chain its Done
		res.Done = func(di balancer.DoneInfo) { done(di); inner(di) }
	} else {
		res.Done = done
	}
	return res, nil
}

// unsent reports whether a Done is of a pick that was not used, which says
// nothing of the endpoint: one a parent policy threw away (ErrNotUsed), or
// one grpc-go could not use because its subchannel had stopped being
// ready (an empty DoneInfo: a call that went out has BytesSent or an
// error).
func unsent(di balancer.DoneInfo) bool {
	return di.Err == parent.ErrNotUsed || di.Err == nil && !di.BytesSent
}

// penalized reports whether a call's error says the endpoint is in
// trouble, rather than the call or its caller.
func penalized(err error) bool {
	if err == nil {
		return false
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Internal, codes.Unknown:
		return true
	}
	return false
}

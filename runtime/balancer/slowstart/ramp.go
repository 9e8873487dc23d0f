package slowstart

import (
	"math"
	"sync/atomic"
	"time"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/internal/clock"
)

// clk is the clock the ramp reads (Nanotime on the pick path, Now to place
// registration times on it); tests replace it with a clock.Fake.
var clk clock.Clock = clock.Real

// ramp is a config's curve, in the units a pick reads.
type ramp struct {
	window int64   // ns
	invAgg float64 // 1/aggression
	floor  float64 // the least factor, in (0, 1]
}

func newRamp(c *Config) ramp {
	agg, floor := c.Aggression, c.MinWeightPercent
	if agg == 0 {
		agg = DefaultAggression
	}
	if floor == 0 {
		floor = DefaultMinWeightPercent
	}
	return ramp{window: int64(c.Window), invAgg: 1 / agg, floor: floor / 100}
}

// factor is the share of a warm instance's weight an instance of age ns
// takes: max(floor, (age/window)^(1/aggression)), 1 from the window's end.
func (r ramp) factor(age int64) float64 {
	if age >= r.window {
		return 1
	}
	x := float64(max(age, 0)) / float64(r.window)
	if r.invAgg != 1 {
		x = math.Pow(x, r.invAgg)
	}
	return max(x, r.floor)
}

// noStart is an instance's start before it is known.
const noStart = math.MinInt64

// instance is what the balancer keeps of one instance (one endpoint of the
// resolver, its pool copies folded in). Its atomics are read by pickers,
// the live page and the metrics; everything else belongs to the channel's
// serializer, as do all writes.
type instance struct {
	addr string // the endpoint's first address, without a pool copy's suffix

	// start is when the instance's ramp starts, in clk.Nanotime: its
	// registration time, else when the balancer first saw it READY;
	// noStart before either.
	start atomic.Int64
	// until is when its ramp ends (start + window) while it ramps, 0 when
	// it does not (it is warm, or nothing ramps). A pick that finds the
	// time past it sets it to 0.
	until atomic.Int64

	registeredAt time.Time // the registration time start was placed from; zero without one
	ready        int       // its SubConns that are READY
}

func newInstance(addr string) *instance {
	in := &instance{addr: addr}
	in.start.Store(noStart)
	return in
}

// setRegisteredAt places a registration time on the clk.Nanotime line, once
// per time: a time in the future (the registrar's clock ahead of ours)
// counts as now.
func (in *instance) setRegisteredAt(t time.Time) {
	if t.IsZero() || t.Equal(in.registeredAt) {
		return
	}
	in.registeredAt = t
	now := clk.Nanotime()
	age := clk.Now().Sub(t)
	in.start.Store(now - max(int64(age), 0))
}

// warmingAt reports whether the instance ramps at now, and its factor.
func (in *instance) warmingAt(r ramp, now int64) (f float64, ok bool) {
	until := in.until.Load()
	if until == 0 || now >= until {
		return 1, false
	}
	return r.factor(now - in.start.Load()), true
}

// evaluate decides, at now, which instances ramp: those whose window has
// not ended, unless no READY instance is warm (a fleet started at once, a
// client's first view without registration times), when none does. It
// reports whether that changed any instance.
func evaluate(instances map[string]*instance, r ramp, now int64) (changed bool) {
	anyWarm := false
	for _, in := range instances {
		if s := in.start.Load(); in.ready > 0 && s != noStart && now-s >= r.window {
			anyWarm = true
			break
		}
	}
	for _, in := range instances {
		var until int64
		if s := in.start.Load(); anyWarm && s != noStart && now-s < r.window {
			until = s + r.window
		}
		if in.until.Swap(until) != until {
			changed = true
		}
	}
	return changed
}

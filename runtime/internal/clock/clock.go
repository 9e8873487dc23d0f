// Package clock is the time the runtime reads, as one seam: the discovery
// hub and its watches (backoff, staleness, linger), the sources' timers
// (DNS refresh, etcd probe and resync) and lb_p2c_ewma's sampling each
// read a Clock; outside tests it is Real, and a test drives them all with
// one Fake, whose Timers tells which waits they asked for.
package clock

import (
	"context"
	"time"
)

// Clock tells the time and makes timers.
type Clock interface {
	// Now is the current time.
	Now() time.Time
	// Nanotime is a monotonic reading in ns, cheaper than Now, for a
	// pick's hot path; only differences between readings mean anything.
	Nanotime() int64
	// AfterFunc calls f in its own goroutine once d has passed, unless
	// the Timer is stopped first. Its Timer's C is nil.
	AfterFunc(d time.Duration, f func()) Timer
	// NewTimer sends the time on the Timer's C once d has passed.
	NewTimer(d time.Duration) Timer
}

// Timer is a time.Timer that a Fake can make too.
type Timer interface {
	// C is the channel the time is sent on; nil for AfterFunc.
	C() <-chan time.Time
	// Stop stops the timer; it reports whether it was running.
	Stop() bool
	// Reset starts the timer again, to fire after d; it reports whether
	// it was running.
	Reset(d time.Duration) bool
}

// Real is the system's clock.
var Real Clock = real{}

type real struct{}

var epoch = time.Now()

func (real) Now() time.Time  { return time.Now() }
func (real) Nanotime() int64 { return int64(time.Since(epoch)) }

func (real) AfterFunc(d time.Duration, f func()) Timer {
	return realTimer{t: time.AfterFunc(d, f)}
}

func (real) NewTimer(d time.Duration) Timer { return realTimer{t: time.NewTimer(d)} }

type realTimer struct{ t *time.Timer }

func (t realTimer) C() <-chan time.Time        { return t.t.C }
func (t realTimer) Stop() bool                 { return t.t.Stop() }
func (t realTimer) Reset(d time.Duration) bool { return t.t.Reset(d) }

// Sleep waits for d on c, or for ctx to end; it reports false if ctx
// ended. A d of zero or less only checks ctx.
func Sleep(ctx context.Context, c Clock, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := c.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C():
		return true
	}
}

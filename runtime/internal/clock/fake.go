package clock

import (
	"slices"
	"sync"
	"time"
)

// Fake is a Clock whose time moves only when its test says (Advance). It
// tells the test each wait it is asked for (Timers), so that a test can
// check the waits a loop asks for and move the time when it waits.
type Fake struct {
	mu     sync.Mutex
	start  time.Time
	now    time.Time
	timers []*fakeTimer // running ones; guarded by mu
	asked  chan time.Duration
}

// NewFake returns a Fake at start.
func NewFake(start time.Time) *Fake {
	return &Fake{start: start, now: start, asked: make(chan time.Duration, 1024)}
}

// Now is the fake time.
func (c *Fake) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Nanotime is the fake time since NewFake, in ns.
func (c *Fake) Nanotime() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return int64(c.now.Sub(c.start))
}

// Timers receives the duration of each timer made or reset (AfterFunc,
// NewTimer, Reset), in order; the first 1024 not yet received are kept,
// later ones dropped.
func (c *Fake) Timers() <-chan time.Duration { return c.asked }

// AfterFunc calls f, from the goroutine that calls Advance, once the
// fake time has moved by d.
func (c *Fake) AfterFunc(d time.Duration, f func()) Timer {
	return c.newTimer(d, f, nil)
}

// NewTimer sends the fake time on C once it has moved by d.
func (c *Fake) NewTimer(d time.Duration) Timer {
	return c.newTimer(d, nil, make(chan time.Time, 1))
}

func (c *Fake) newTimer(d time.Duration, f func(), ch chan time.Time) *fakeTimer {
	t := &fakeTimer{c: c, f: f, ch: ch}
	t.Reset(d)
	return t
}

// Advance moves the fake time by d, fires the timers that are due, in the
// order they are due, and calls the due AfterFuncs in this goroutine.
func (c *Fake) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []*fakeTimer
	kept := c.timers[:0]
	for _, t := range c.timers {
		if t.at.After(c.now) {
			kept = append(kept, t)
			continue
		}
		t.running = false
		due = append(due, t)
	}
	c.timers = kept
	slices.SortStableFunc(due, func(a, b *fakeTimer) int { return a.at.Compare(b.at) })
	now := c.now
	c.mu.Unlock()
	for _, t := range due {
		if t.ch != nil {
			select {
			case t.ch <- now:
			default: // as time.Timer: one value waits in C at most
			}
		} else {
			t.f()
		}
	}
}

type fakeTimer struct {
	c       *Fake
	f       func()
	ch      chan time.Time
	at      time.Time // guarded by c.mu
	running bool      // guarded by c.mu
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	return t.stopLocked()
}

func (t *fakeTimer) stopLocked() bool {
	if !t.running {
		return false
	}
	t.running = false
	for i, o := range t.c.timers {
		if o == t {
			t.c.timers = append(t.c.timers[:i], t.c.timers[i+1:]...)
			break
		}
	}
	return true
}

func (t *fakeTimer) Reset(d time.Duration) bool {
	t.c.mu.Lock()
	was := t.stopLocked()
	t.at = t.c.now.Add(d)
	t.running = true
	t.c.timers = append(t.c.timers, t)
	t.c.mu.Unlock()
	select {
	case t.c.asked <- d:
	default:
	}
	return was
}

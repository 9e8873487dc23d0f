package discovery

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/grpclog"
	"google.golang.org/grpc/resolver"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/internal/clock"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/internal/retry"
)

var logger = grpclog.Component("lb-discovery")

// maxDropLines is how many dropped entries one flush logs one by one; the
// rest are summed up in one line.
const maxDropLines = 5

// watch is the one loop every backend shares: it runs one Source, turns
// what it sends into the state the channels see, applies the failure
// policy, and hands the result to every subscriber.
//
// Its mutex is never held while it calls into grpc-go (a channel's
// UpdateState or ReportError, which wait for that channel's balancer, or
// a MetricsRecorder), as grpc-go's outlier detection never holds its own
// while it calls its child: what a change made under mu calls for is
// noted there (toDeliver, dropsToCount) and done by unlock once mu is
// released. Subscribers are offered a copy of the view, and each gives it
// to its channel in its own time (see subscriber): a slow channel holds up
// neither the source, nor the failure policy's timer, nor other channels.
type watch struct {
	key   Key
	spec  Spec
	clock clock.Clock

	ctx        context.Context
	cancel     context.CancelFunc
	done       chan struct{}
	resolveNow chan struct{}

	// mu guards the state below. Functions that need it held end in
	// Locked; those that take it to change the watch release it with
	// unlock.
	mu       sync.Mutex
	stopped  bool
	source   Source // once New succeeded
	set      *instanceSet
	reset    bool                // a Reset since the last Flush
	dirty    bool                // a change since the last Flush
	dropped  map[string]string   // ID -> reason, of entries dropped as invalid
	dropLog  []Dropped           // dropped since the last Flush, to log
	good     []resolver.Endpoint // the last good set; nil before the first
	goodAt   time.Time           // when the registry last gave it
	badSince time.Time           // when the registry stopped giving a good set; zero while it does
	expiry   clock.Timer         // the failure policy's timer
	flushes  int                 // Flushes since the last watch error
	warn     *LogLimiter         // the warnings about the registry's entries
	view     view
	subs     map[*subscriber]struct{}
	// What unlock does once mu is released.
	toDeliver    bool     // offer the view to every subscriber
	dropsToCount []string // drop reasons, to count in every channel's metrics
}

// view is what the subscribers are given: the state to publish and the
// error to report, each with a version so that each subscriber gets each
// once and in order. A view is copied under the watch's mu and offered
// after it is released, so copies may reach a subscriber out of order: the
// versions, which only grow, tell it which is the newest.
type view struct {
	stateVer uint64
	state    *resolver.State // nil until there is something to publish
	errVer   uint64
	err      error // nil while the registry gives a good set
}

func newWatch(spec Spec, c clock.Clock) *watch {
	ctx, cancel := context.WithCancel(context.Background())
	if spec.Backoff.Base == 0 {
		spec.Backoff.Base = DefaultBackoff.Base
	}
	if spec.Backoff.Max == 0 {
		spec.Backoff.Max = DefaultBackoff.Max
	}
	return &watch{
		key:        spec.Key,
		spec:       spec,
		clock:      c,
		ctx:        ctx,
		cancel:     cancel,
		done:       make(chan struct{}),
		resolveNow: make(chan struct{}, 1),
		set:        newInstanceSet(),
		warn:       newLogLimiter(logger, c),
		dropped:    map[string]string{},
		subs:       map[*subscriber]struct{}{},
	}
}

func (w *watch) start() { go w.run() }

// seed starts a new watch from the last good set of its predecessor, given
// at, as far as the failure policy keeps a set that old: the channels get
// it at once, as stale since at, until the registry answers.
func (w *watch) seed(eps []resolver.Endpoint, at time.Time) {
	p := w.spec.Policy
	age := w.clock.Now().Sub(at)
	switch {
	case p.Mode == FailFast, p.Mode == StaticFallback && p.MaxStaleness == 0:
		return
	case p.MaxStaleness > 0 && age >= p.MaxStaleness:
		return
	}
	s := stateOf(eps)
	w.good, w.goodAt, w.badSince = eps, at, at
	w.view.state, w.view.stateVer = &s, 1
	if p.MaxStaleness > 0 {
		w.expiry = w.clock.AfterFunc(p.MaxStaleness-age, w.expire)
	}
}

// lastGood returns the last good set and when the registry gave it; nil
// if it never did.
func (w *watch) lastGood() ([]resolver.Endpoint, time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.good, w.goodAt
}

// stop ends the watch and waits for it.
func (w *watch) stop() {
	w.cancel()
	<-w.done
	w.mu.Lock()
	w.stopped = true
	if w.expiry != nil {
		w.expiry.Stop()
	}
	w.mu.Unlock()
}

func (w *watch) run() {
	defer close(w.done)
	var src Source
	for failures := 0; ; failures++ {
		// failures counts the watches in a row that broke before the
		// source sent anything.
		if src == nil {
			var err error
			if src, err = w.spec.New(); err != nil {
				w.fail(err)
			} else {
				w.mu.Lock()
				w.source = src
				w.mu.Unlock()
			}
		}
		if src != nil {
			err := src.Watch(w.ctx, (*updates)(w))
			if w.ctx.Err() != nil {
				break
			}
			if err == nil {
				err = errors.New("watch ended")
			}
			w.fail(err)
			w.mu.Lock()
			if w.flushes > 0 {
				failures = 0 // this watch worked for a while: back off from the start
			}
			w.flushes = 0
			w.mu.Unlock()
		}
		if !clock.Sleep(w.ctx, w.clock, retry.Backoff(failures, w.spec.Backoff.Base, w.spec.Backoff.Max)) {
			break
		}
	}
	if c, ok := src.(Closer); ok {
		c.Close()
	}
}

// updates is the Updates side of a watch.
type updates watch

func (u *updates) Reset(insts []Instance, dropped []Dropped) {
	w := (*watch)(u)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.set = newInstanceSet()
	w.reset, w.dirty = true, true
	old := w.dropped
	w.dropped = map[string]string{}
	for _, d := range dropped {
		w.dropLocked(d, old)
	}
	for _, inst := range insts {
		w.putLocked(inst, old)
	}
}

func (u *updates) Put(inst Instance) {
	w := (*watch)(u)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.putLocked(inst, w.dropped)
}

func (u *updates) Delete(id string) {
	w := (*watch)(u)
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.dropped, id)
	if w.set.delete(id) {
		w.dirty = true
	}
}

func (u *updates) Drop(d Dropped) {
	w := (*watch)(u)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.dropLocked(d, w.dropped)
	if w.set.delete(d.ID) {
		w.dirty = true
	}
}

func (u *updates) Fail(err error) { (*watch)(u).fail(err) }

func (u *updates) ResolveNow() <-chan struct{} { return u.resolveNow }

func (u *updates) Clock() clock.Clock { return u.clock }

func (u *updates) Flush() {
	w := (*watch)(u)
	w.mu.Lock()
	defer w.unlock()
	w.flushes++
	w.reportDropsLocked()
	if w.set.len() == 0 {
		err := ErrNoInstances
		if r, ok := w.source.(NoInstancesReporter); ok {
			err = r.NoInstances()
		}
		if len(w.dropped) > 0 {
			err = fmt.Errorf("%w: every entry (%d) was dropped as invalid", ErrNoInstances, len(w.dropped))
		}
		w.reset, w.dirty = false, false
		w.failLocked(err)
		return
	}
	if !w.dirty && w.badSince.IsZero() {
		w.goodAt = w.clock.Now()
		return
	}
	eps := w.set.endpoints()
	w.goodAt = w.clock.Now()
	if w.reset && w.badSince.IsZero() && equalEndpoints(eps, w.good) {
		w.reset, w.dirty = false, false
		// Channels whose balancer rejected the state get it again.
		w.deliverLocked()
		return
	}
	w.reset, w.dirty = false, false
	w.good = eps
	if w.recoverLocked() {
		// Give the balancers a good state again even if it is the one they
		// had before the error.
		w.view.state = nil
	}
	w.publishLocked(eps)
}

// putLocked records inst, or drops it when its address is not valid.
func (w *watch) putLocked(inst Instance, dropped map[string]string) {
	addr, err := ParseAddress(inst.Address)
	if err != nil {
		w.dropLocked(Dropped{ID: inst.ID, Reason: err}, dropped)
		if w.set.delete(inst.ID) {
			w.dirty = true
		}
		return
	}
	delete(w.dropped, inst.ID)
	inst.Address = addr
	if w.set.put(inst) {
		w.dirty = true
	}
}

// dropLocked records that an entry is invalid, to log it if its reason is
// new.
func (w *watch) dropLocked(d Dropped, old map[string]string) {
	reason := d.Reason.Error()
	if old[d.ID] != reason {
		w.dropLog = append(w.dropLog, d)
	}
	w.dropped[d.ID] = reason
}

// reportDropsLocked has the entries dropped since the last flush counted
// in every channel's lb.discovery.dropped (by unlock), and logs them: the
// first few one by one, the rest summed up, so that a registry full of bad
// values cannot flood the log; an entry is reported again only when its
// reason changes, and entries that flap are held to the watch's
// LogLimiter.
func (w *watch) reportDropsLocked() {
	for _, d := range w.dropLog {
		w.dropsToCount = append(w.dropsToCount, dropReason(d.Reason))
	}
	for i, d := range w.dropLog {
		if i == maxDropLines {
			w.warn.Warningf("%s: and %d more entries dropped as invalid (%d in all now)", w.key, len(w.dropLog)-i, len(w.dropped))
			break
		}
		w.warn.Warningf("%s: dropping %s: %v", w.key, d.ID, d.Reason)
	}
	w.dropLog = w.dropLog[:0]
}

// publishLocked makes eps (nil: none, calls fail) the state of the view,
// for unlock to offer to every subscriber.
func (w *watch) publishLocked(eps []resolver.Endpoint) {
	if w.view.state != nil && equalEndpoints(w.view.state.Endpoints, eps) {
		return
	}
	s := stateOf(eps)
	if eps == nil {
		s.Endpoints = []resolver.Endpoint{}
	}
	w.view.state = &s
	w.view.stateVer++
	w.deliverLocked()
}

// reportLocked makes err the error of the view, once for as long as it
// stays the same, for unlock to offer to every subscriber.
func (w *watch) reportLocked(err error) {
	if w.view.err == nil || w.view.err.Error() != err.Error() {
		w.view.err = err
		w.view.errVer++
		logger.Infof("%v", err)
		w.deliverLocked()
	}
}

// deliverLocked has unlock offer the view to every subscriber.
func (w *watch) deliverLocked() { w.toDeliver = true }

// unlock releases mu, then does what the changes made under it call for:
// it offers a copy of the view to every subscriber (which never waits on
// a channel) and counts dropped entries in the channels' metrics.
func (w *watch) unlock() {
	deliver, drops := w.toDeliver, w.dropsToCount
	w.toDeliver, w.dropsToCount = false, nil
	var subs []*subscriber
	if deliver || len(drops) > 0 {
		subs = make([]*subscriber, 0, len(w.subs))
		for s := range w.subs {
			subs = append(subs, s)
		}
	}
	v := w.view
	w.mu.Unlock()
	for _, s := range subs {
		s.countDrops(drops)
		if deliver {
			s.offer(v)
		}
	}
	if deliver {
		notifyChanged()
	}
}

// subscribe adds s and offers it the current view at once.
func (w *watch) subscribe(s *subscriber) {
	w.mu.Lock()
	w.subs[s] = struct{}{}
	v := w.view
	w.mu.Unlock()
	s.offer(v)
}

func (w *watch) unsubscribe(s *subscriber) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.subs, s)
}

// requestResolve passes a channel's ResolveNow to a polling source; it
// never blocks.
func (w *watch) requestResolve() {
	select {
	case w.resolveNow <- struct{}{}:
	default:
	}
}

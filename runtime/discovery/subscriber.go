package discovery

import (
	"sync"

	estats "google.golang.org/grpc/experimental/stats"
	"google.golang.org/grpc/resolver"
)

// subscriber is one channel's resolver: it takes what its watch publishes
// and gives it to the channel, in order, without ever holding the watch up.
//
// The watch offers it each new view (offer, which never waits on the
// channel); the subscriber keeps the newest, and one goroutine, started by
// offer when none runs and ending when the channel has had the newest,
// gives it to the channel. grpc-go's UpdateState waits for the channel's
// balancer, so a slow balancer delays only its own channel, which then gets
// the newest view and skips those that came in between; a channel is never
// given a state or error older than one it was given. The goroutine belongs
// to the subscriber: Close stops it and waits for it.
type subscriber struct {
	w             *watch
	h             *hub
	cc            resolver.ClientConn
	metrics       estats.MetricsRecorder // nil when the channel has none
	target        string                 // the channel's target without user info or query, for the metrics
	label         string                 // the watch, for the metrics
	stopReporting func()                 // ends the staleness reports; nil without metrics

	// mu guards the fields below; it is never held while calling the
	// channel.
	mu         sync.Mutex
	closed     bool
	latest     view   // the newest view offered
	fresh      bool   // latest was offered since the delivery last took it
	delivering bool   // the goroutine runs
	stateVer   uint64 // of the state the channel was last given, and took
	errVer     uint64 // of the error the channel was last given
	delivery   sync.WaitGroup
}

// offer makes v the view to give the channel next, unless a newer one was
// offered already (copies of the watch's view may arrive out of order),
// and starts the delivery if none runs. It never waits on the channel. The
// same view offered again is given again to a channel whose balancer
// rejected its state.
func (s *subscriber) offer(v view) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || v.stateVer < s.latest.stateVer || v.errVer < s.latest.errVer {
		return
	}
	s.latest, s.fresh = v, true
	if s.delivering || !s.newToChannelLocked(v) {
		return
	}
	s.delivering = true
	s.delivery.Add(1)
	go s.deliver()
}

// newToChannelLocked reports whether v holds a state or an error that the
// channel has not been given.
func (s *subscriber) newToChannelLocked(v view) bool {
	return v.state != nil && v.stateVer > s.stateVer || v.err != nil && v.errVer > s.errVer
}

// deliver gives the channel the newest view offered, and again while newer
// ones are offered meanwhile; it runs in the subscriber's goroutine.
func (s *subscriber) deliver() {
	defer s.delivery.Done()
	for {
		s.mu.Lock()
		if s.closed || !s.fresh || !s.newToChannelLocked(s.latest) {
			s.delivering = false
			s.mu.Unlock()
			return
		}
		v, prev := s.latest, s.stateVer
		s.fresh = false
		giveState := v.state != nil && v.stateVer > s.stateVer
		if giveState {
			s.stateVer = v.stateVer
		}
		giveErr := v.err != nil && v.errVer > s.errVer
		if giveErr {
			s.errVer = v.errVer
		}
		s.mu.Unlock()

		if giveState {
			if s.metrics != nil {
				updatesMetric.Record(s.metrics, 1, s.target, s.label)
				instancesMetric.Record(s.metrics, int64(len(v.state.Endpoints)), s.target, s.label)
			}
			if err := s.cc.UpdateState(*v.state); err != nil && len(v.state.Endpoints) > 0 {
				// The balancer rejected the state: ask a polling source to
				// look again, as grpc-go's dns resolver does, and give this
				// channel the state again when the watch offers it again
				// (with the next answer). An empty state is always
				// rejected: that is how calls fail.
				s.mu.Lock()
				s.stateVer = prev
				s.mu.Unlock()
				s.w.requestResolve()
			}
		}
		if giveErr {
			if s.metrics != nil {
				errorsMetric.Record(s.metrics, 1, s.target, s.label, errorKind(v.err))
			}
			s.cc.ReportError(v.err)
		}
	}
}

// countDrops counts entries the watch dropped, by reason, in the channel's
// lb.discovery.dropped.
func (s *subscriber) countDrops(reasons []string) {
	if s.metrics == nil || len(reasons) == 0 {
		return
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return
	}
	for _, r := range reasons {
		droppedMetric.Record(s.metrics, 1, s.target, s.label, r)
	}
}

// report gives the staleness of the channel's state to an asynchronous
// metrics collection. A collection holds the metrics SDK's lock while it
// asks, and a channel's Build may take that lock: report may wait for the
// watch's mu because nothing waits on a channel, or on metrics, with mu
// held.
func (s *subscriber) report(r estats.AsyncMetricsRecorder) error {
	w := s.w
	w.mu.Lock()
	var ms int64
	if !w.badSince.IsZero() && w.good != nil {
		ms = w.clock.Now().Sub(w.badSince).Milliseconds()
	}
	w.mu.Unlock()
	stalenessMetric.Record(r, ms, s.target, s.label)
	return nil
}

// ResolveNow asks a polling source to look again; it never blocks.
func (s *subscriber) ResolveNow(resolver.ResolveNowOptions) { s.w.requestResolve() }

// Close stops giving the channel updates, and waits for an update being
// given (a slow balancer's UpdateState): nothing reaches the channel after
// Close returns. The watch stops when its last subscriber has gone and a
// short linger has passed.
func (s *subscriber) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.mu.Unlock()
	s.delivery.Wait()
	if s.stopReporting != nil {
		s.stopReporting()
	}
	s.h.release(s)
}

package discovery

import (
	"sync"
	"time"

	estats "google.golang.org/grpc/experimental/stats"
	"google.golang.org/grpc/resolver"
)

// subscriber is one channel's resolver: it takes what its watch publishes.
type subscriber struct {
	w             *watch
	h             *hub
	cc            resolver.ClientConn
	metrics       estats.MetricsRecorder // nil when the channel has none
	target        string                 // the channel's target without user info or query, for the metrics
	label         string                 // the watch, for the metrics
	stopReporting func()                 // ends the staleness reports; nil without metrics

	mu       sync.Mutex
	closed   bool
	stateVer uint64
	errVer   uint64
}

// deliver gives v's state and error to the channel, if it has not had them.
func (s *subscriber) deliver(v view) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if v.state != nil && v.stateVer > s.stateVer {
		prev := s.stateVer
		s.stateVer = v.stateVer
		if s.metrics != nil {
			updatesMetric.Record(s.metrics, 1, s.target, s.label)
			instancesMetric.Record(s.metrics, int64(len(v.state.Endpoints)), s.target, s.label)
		}
		if err := s.cc.UpdateState(*v.state); err != nil && len(v.state.Endpoints) > 0 {
			// The balancer rejected the state: ask a polling source to
			// look again, as grpc-go's dns resolver does, and give this
			// channel the state again with the next answer. (An empty
			// state is always rejected: that is how calls fail.)
			s.stateVer = prev
			s.w.requestResolve()
		}
	}
	if v.err != nil && v.errVer > s.errVer {
		s.errVer = v.errVer
		if s.metrics != nil {
			errorsMetric.Record(s.metrics, 1, s.target, s.label, errorKind(v.err))
		}
		s.cc.ReportError(v.err)
	}
}

// report gives the staleness of the channel's state to an asynchronous
// metrics collection. It takes no lock (see watch.staleSince).
func (s *subscriber) report(r estats.AsyncMetricsRecorder) error {
	var ms int64
	if since := s.w.staleSince.Load(); since != 0 {
		ms = s.w.clock.Now().Sub(time.Unix(0, since)).Milliseconds()
	}
	stalenessMetric.Record(r, ms, s.target, s.label)
	return nil
}

// ResolveNow asks a polling source to look again; it never blocks.
func (s *subscriber) ResolveNow(resolver.ResolveNowOptions) { s.w.requestResolve() }

// Close stops giving the channel updates; the watch stops when its last
// subscriber has gone and a short linger has passed.
func (s *subscriber) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.mu.Unlock()
	if s.stopReporting != nil {
		s.stopReporting()
	}
	s.h.release(s)
}

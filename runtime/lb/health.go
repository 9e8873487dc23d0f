package lb

import (
	"context"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthgrpc "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

const healthServiceName = "grpc.health.v1.Health"

// wholeServer is the health service name of the server as a whole, which
// Kubernetes' gRPC probe, grpc-health-probe and most load balancers check.
const wholeServer = ""

// healthWatches is the health service this package registers: grpc-go's,
// with each Watch stream known, so that Shutdown can wait until every
// watcher has been told NOT_SERVING, and then end the streams.
type healthWatches struct {
	*health.Server

	mu      sync.Mutex
	streams map[*watchStream]struct{} // guarded by mu
	changed chan struct{}             // closed and replaced on every change; guarded by mu
	ended   bool                      // guarded by mu
}

// watchStream is one Watch stream, with the last status sent on it.
type watchStream struct {
	healthgrpc.Health_WatchServer
	ctx     context.Context
	cancel  context.CancelFunc
	service string
	w       *healthWatches
	last    healthgrpc.HealthCheckResponse_ServingStatus // guarded by w.mu
}

func (s *watchStream) Context() context.Context { return s.ctx }

func (s *watchStream) Send(m *healthgrpc.HealthCheckResponse) error {
	err := s.Health_WatchServer.Send(m)
	if err == nil {
		s.w.mu.Lock()
		s.last = m.GetStatus()
		s.w.notifyLocked()
		s.w.mu.Unlock()
	}
	return err
}

func (w *healthWatches) notifyLocked() {
	close(w.changed)
	w.changed = make(chan struct{})
}

// Watch serves grpc-go's Watch on a stream this package can end.
func (w *healthWatches) Watch(req *healthgrpc.HealthCheckRequest, stream healthgrpc.Health_WatchServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	s := &watchStream{Health_WatchServer: stream, ctx: ctx, cancel: cancel, service: req.GetService(), w: w}
	w.mu.Lock()
	if w.ended {
		w.mu.Unlock()
		return status.Error(codes.Unavailable, "lb: the server is shutting down")
	}
	w.streams[s] = struct{}{}
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		delete(w.streams, s)
		w.notifyLocked()
		w.mu.Unlock()
	}()
	return w.Server.Watch(req, s)
}

// watching returns the streams that watch one of services now.
func (w *healthWatches) watching(services []string) []*watchStream {
	ours := map[string]bool{}
	for _, s := range services {
		ours[s] = true
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []*watchStream
	for s := range w.streams {
		if ours[s.service] {
			out = append(out, s)
		}
	}
	return out
}

// waitTold waits until each of streams has last been sent something other
// than SERVING, or has ended (its client went away), or ctx ends.
func (w *healthWatches) waitTold(ctx context.Context, streams []*watchStream) {
	for {
		w.mu.Lock()
		pending := 0
		for _, s := range streams {
			if _, open := w.streams[s]; open && s.last == healthgrpc.HealthCheckResponse_SERVING {
				pending++
			}
		}
		changed := w.changed
		w.mu.Unlock()
		if pending == 0 {
			return
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return
		}
	}
}

// end ends every Watch stream, and makes new ones end with the server.
func (w *healthWatches) end() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ended = true
	for s := range w.streams {
		s.cancel()
	}
}

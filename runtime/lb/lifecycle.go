package lb

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthgrpc "google.golang.org/grpc/health/grpc_health_v1"
)

// Shutdown bounds, for servers registered with Register.
var (
	// PropagationTimeout bounds how long Shutdown waits, after
	// deregistering, for every client watching the server's health to be
	// told NOT_SERVING.
	PropagationTimeout = 5 * time.Second
	// DrainTimeout bounds how long Shutdown lets calls in flight finish
	// when its context has no earlier deadline; then the server stops at
	// once.
	DrainTimeout = 30 * time.Second
)

// ShutdownReport is what the last Shutdown of a server measured.
type ShutdownReport struct {
	// Services are the services deregistered.
	Services []string
	// Watchers is how many health Watch streams watched the services, or
	// the whole server (""), when Shutdown began.
	Watchers int
	// Propagation is how long it took, from NOT_SERVING, until every
	// watcher had been told (or had gone: its client dropped the server on
	// the registry's word first); bounded by PropagationTimeout.
	Propagation time.Duration
	// Drain is how long GracefulStop took; Forced says it hit its deadline
	// and the server was stopped at once.
	Drain  time.Duration
	Forced bool
}

// serverState is what this package keeps of one grpc.Server: its health
// service and every Registration on it, so that Shutdown takes them all
// down in one call.
type serverState struct {
	server *grpc.Server
	health *health.Server
	// watches is nil when the health service was registered by the
	// caller, whose Watch streams this package cannot end.
	watches *healthWatches

	serving     chan struct{} // closed once the server is serving
	servingOnce sync.Once
	stop        chan struct{} // closed when Shutdown begins
	stopOnce    sync.Once

	mu      sync.Mutex
	regs    []*Registration // guarded by mu
	probed  bool            // a probe of the server's address runs; guarded by mu
	metrics *serverMetrics  // of the first Register with WithMetrics; guarded by mu

	shutdownOnce sync.Once
	shutdownErr  error
	report       ShutdownReport // written before shutdownDone is closed
	shutdownDone chan struct{}
	wg           sync.WaitGroup // the probe
}

// servers holds the state of every server Register was called on.
var servers = struct {
	sync.Mutex
	m map[*grpc.Server]*serverState // guarded by the Mutex
}{m: map[*grpc.Server]*serverState{}}

// stateFor returns the state of s, registering its health service on the
// first call.
func stateFor(s *grpc.Server, given *health.Server) (*serverState, error) {
	servers.Lock()
	defer servers.Unlock()
	if st, ok := servers.m[s]; ok {
		if given != nil && given != st.health {
			return nil, fmt.Errorf("lb: a different health server was registered on this server before")
		}
		return st, nil
	}
	_, registered := s.GetServiceInfo()[healthServiceName]
	st := &serverState{server: s, health: given, serving: make(chan struct{}), stop: make(chan struct{}), shutdownDone: make(chan struct{})}
	switch {
	case given == nil && registered:
		return nil, ErrHealthRegistered
	case given == nil:
		st.health = health.NewServer()
	}
	if !registered {
		st.watches = &healthWatches{Server: st.health, streams: map[*watchStream]struct{}{}, changed: make(chan struct{})}
		healthgrpc.RegisterHealthServer(s, st.watches)
	}
	servers.m[s] = st
	return st, nil
}

func (st *serverState) setMetrics(m *serverMetrics) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.metrics == nil {
		st.metrics = m
	}
}

func (st *serverState) add(r *Registration) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.regs = append(st.regs, r)
}

func (st *serverState) markServing() { st.servingOnce.Do(func() { close(st.serving) }) }

// probe starts, once per server, a goroutine that marks the server serving
// when addr answers: a gRPC server sends its HTTP/2 settings as soon as it
// accepts a plaintext connection, and completes (or refuses with an alert)
// a TLS handshake; a listener nobody serves yet only queues connections.
func (st *serverState) probe(addr string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.probed {
		return
	}
	st.probed = true
	st.wg.Add(1)
	go func() {
		defer st.wg.Done()
		wait := 20 * time.Millisecond
		for {
			if answers(addr, st.stop) {
				st.markServing()
				return
			}
			select {
			case <-st.serving: // Serve's listener said so first
				return
			case <-st.stop:
				return
			case <-time.After(wait):
			}
			wait = min(2*wait, time.Second)
		}
	}()
}

// answers reports whether a server serves at addr.
func answers(addr string, stop <-chan struct{}) bool {
	const timeout = 500 * time.Millisecond
	d := net.Dialer{Timeout: timeout}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return false
	}
	c.SetDeadline(time.Now().Add(timeout))
	var b [1]byte
	_, err = c.Read(b[:])
	c.Close()
	if err == nil {
		return true // plaintext: the server's settings frame
	}
	select {
	case <-stop:
		return false
	default:
	}
	// TLS: the server speaks once it has a ClientHello. The probe checks
	// no certificate: it only asks whether something serves.
	tc, err := tls.DialWithDialer(&d, "tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}}) // #nosec G402 -- a liveness probe, nothing is sent
	if err == nil {
		tc.Close()
		return true
	}
	var alert tls.AlertError
	var rec tls.RecordHeaderError
	return errors.As(err, &alert) || errors.As(err, &rec)
}

// servingListener marks its server serving at the first Accept: grpc-go
// calls Accept once Serve runs.
type servingListener struct {
	net.Listener
	st *serverState
}

func (l servingListener) Accept() (net.Conn, error) {
	l.st.markServing()
	return l.Listener.Accept()
}

// shutdown takes every service of the server down, once; see
// Registration.Shutdown.
func (st *serverState) shutdown(ctx context.Context) error {
	st.shutdownOnce.Do(func() {
		st.shutdownErr = st.doShutdown(ctx)
		close(st.shutdownDone)
	})
	return st.shutdownErr
}

func (st *serverState) doShutdown(ctx context.Context) error {
	st.stopOnce.Do(func() { close(st.stop) })
	st.wg.Wait()
	st.mu.Lock()
	regs := append([]*Registration(nil), st.regs...)
	sm := st.metrics
	st.mu.Unlock()
	// 1. The whole server ("") and every service NOT_SERVING: readiness
	// probes and load balancers, which check "", and health-checking
	// clients stop sending calls to this server.
	for _, r := range regs {
		st.report.Services = append(st.report.Services, r.service)
	}
	down := append([]string{wholeServer}, st.report.Services...)
	var watchers []*watchStream
	if st.watches != nil {
		watchers = st.watches.watching(down)
		st.report.Watchers = len(watchers)
	}
	start := time.Now()
	for _, svc := range down {
		st.health.SetServingStatus(svc, healthgrpc.HealthCheckResponse_NOT_SERVING)
	}
	// 2. Out of the registry, all at once.
	errs := make([]error, len(regs))
	var wg sync.WaitGroup
	for i, r := range regs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = r.deregister(ctx)
		}()
	}
	wg.Wait()
	// 3. Wait until every health watcher has been told (bounded).
	if st.watches != nil {
		pctx, cancel := context.WithTimeout(ctx, PropagationTimeout)
		st.watches.waitTold(pctx, watchers)
		cancel()
		st.report.Propagation = time.Since(start)
		if sm != nil {
			sm.propagation.Record(context.WithoutCancel(ctx), st.report.Propagation.Seconds())
		}
		// Watch streams never end on their own: GracefulStop would wait
		// for them until its deadline.
		st.watches.end()
	}
	st.health.Shutdown()
	// 4. Drain calls in flight, within the context's deadline or
	// DrainTimeout, whichever comes first; then stop at once.
	dctx, cancel := context.WithTimeout(ctx, DrainTimeout)
	defer cancel()
	drained := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		st.server.GracefulStop()
	}()
	select {
	case <-done:
	case <-dctx.Done():
		st.report.Forced = true
		st.server.Stop()
		<-done
	}
	st.report.Drain = time.Since(drained)
	servers.Lock()
	delete(servers.m, st.server)
	servers.Unlock()
	return errors.Join(errs...)
}

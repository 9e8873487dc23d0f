package lb

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthgrpc "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
)

// RegisterTimeout bounds the first registry registration in Register.
const RegisterTimeout = 10 * time.Second

// ErrHealthRegistered is returned by Register when the server already has a
// grpc.health.v1 service that this package did not register; pass it with
// WithHealthServer.
var ErrHealthRegistered = errors.New("lb: grpc.health.v1.Health is already registered on this server: pass it with lb.WithHealthServer")

type registerOptions struct {
	registry  string
	advertise string
	id        string
	metadata  discovery.Metadata
	health    *health.Server
	metrics   metric.MeterProvider
	locality  *Locality // nil: localityFromEnv
}

type registerFunc func(*registerOptions)

func (f registerFunc) applyRegister(o *registerOptions) { f(o) }

// WithAdvertiseAddress is the "host:port" clients reach this server at.
// Without it the server is not put in the registry.
func WithAdvertiseAddress(addr string) RegisterOption {
	return registerFunc(func(o *registerOptions) { o.advertise = addr })
}

// WithInstanceID sets the instance's ID in the registry. Default:
// "<service>-<host>-<port>" of the advertise address.
func WithInstanceID(id string) RegisterOption {
	return registerFunc(func(o *registerOptions) { o.id = id })
}

// WithMetadata publishes md with the instance.
func WithMetadata(md discovery.Metadata) RegisterOption {
	return registerFunc(func(o *registerOptions) { o.metadata = md })
}

// WithHealthServer uses h as the server's grpc.health.v1 service. It is
// registered on the server unless it already is.
func WithHealthServer(h *health.Server) RegisterOption {
	return registerFunc(func(o *registerOptions) { o.health = h })
}

// ErrNotServing is the Status of a Registration whose server does not
// serve yet: the instance is put in the registry once it does.
var ErrNotServing = errors.New("lb: waiting for the server to serve before registering it (serve with Registration.Serve, or make the advertise address reachable from this host)")

// Register registers impl as svc's implementation (desc is the generated
// <Svc>_ServiceDesc) and svc's health status as SERVING in the server's
// grpc.health.v1 service. When an advertise address is given and the
// discovery backend supports it (etcd, Consul), it also puts the instance
// in the registry, in the background, once the server serves: at the
// first Accept of a listener served with Registration.Serve, or when the
// advertise address answers. Status and StatusChanged tell how that goes;
// Register fails only on a bad option, never on the registry, so the
// usual `if err != nil { return err }` leaks nothing. Static and DNS
// discovery have no registry, so there it does nothing more.
//
// One Shutdown takes the server and every service registered on it down.
func Register(s *grpc.Server, svc *Service, desc *grpc.ServiceDesc, impl any, opts ...RegisterOption) (*Registration, error) {
	var o registerOptions
	for _, opt := range opts {
		opt.applyRegister(&o)
	}
	r := &Registration{service: svc.FullName, changed: make(chan struct{})}
	var addr string
	if o.advertise != "" {
		var err error
		addr, err = discovery.ParseAddress(o.advertise)
		if err != nil {
			return nil, fmt.Errorf("lb: %s: advertise address: %w", svc.FullName, err)
		}
		if rc, ok := svc.Discovery.(discovery.RegistrarConfig); ok {
			inst := discovery.Instance{Service: svc.Name, ID: o.id, Address: addr, HealthService: svc.FullName, Metadata: o.metadata}
			loc := localityFromEnv()
			if o.locality != nil {
				loc = *o.locality
			}
			if inst.Metadata.Zone == "" {
				inst.Metadata.Zone = loc.Zone
			}
			if inst.Metadata.Region == "" {
				inst.Metadata.Region = loc.Region
			}
			if inst.ID == "" {
				inst.ID = defaultInstanceID(svc.Name, addr)
			}
			if r.registrar, err = rc.NewRegistrar(inst, o.registry); err != nil {
				return nil, fmt.Errorf("lb: %s: %w", svc.FullName, err)
			}
		}
	}
	st, err := stateFor(s, o.health)
	if err != nil {
		return nil, err
	}
	r.st = st
	if o.metrics != nil {
		sm, err := newServerMetrics(o.metrics)
		if err != nil {
			return nil, fmt.Errorf("lb: %s: metrics: %w", svc.FullName, err)
		}
		if r.registrar != nil {
			backend := "registry"
			if t, err := svc.Discovery.Target(svc.Name, o.registry); err == nil {
				backend, _, _ = strings.Cut(t, ":")
			}
			if r.stopMetrics, err = sm.observe(r, backend, addr); err != nil {
				return nil, fmt.Errorf("lb: %s: metrics: %w", svc.FullName, err)
			}
		}
		st.setMetrics(sm)
	}
	s.RegisterService(desc, impl)
	st.health.SetServingStatus(svc.FullName, healthgrpc.HealthCheckResponse_SERVING)
	st.add(r)
	trackRegistration(r, svc, o.registry, addr, o.id)
	if r.registrar != nil {
		r.status = ErrNotServing
		ctx, cancel := context.WithCancel(context.Background())
		r.cancel = cancel
		st.probe(addr)
		r.wg.Add(1)
		go r.registerWhenServing(ctx)
	}
	return r, nil
}

// registerWhenServing puts the instance in the registry once the server
// serves. The registrar keeps it there (and retries a failed first
// attempt) until Deregister.
func (r *Registration) registerWhenServing(ctx context.Context) {
	defer r.wg.Done()
	select {
	case <-r.st.serving:
	case <-ctx.Done():
		return
	}
	rctx, cancel := context.WithTimeout(ctx, RegisterTimeout)
	defer cancel()
	err := r.registrar.Register(rctx)
	if err != nil {
		err = fmt.Errorf("lb: %s: registering (retrying in the background): %w", r.service, err)
	}
	r.handOver(err)
}

func defaultInstanceID(service, addr string) string {
	host, port, _ := net.SplitHostPort(addr)
	r := strings.NewReplacer("/", "-", ":", "-", "[", "", "]", "")
	return r.Replace(service + "-" + host + "-" + port)
}

// Registration is a service registered on a server by Register.
type Registration struct {
	st        *serverState
	service   string
	registrar discovery.Registrar // nil when the backend has no registry
	cancel    context.CancelFunc  // stops registerWhenServing
	wg        sync.WaitGroup      // registerWhenServing
	// stopMetrics ends the registration's metrics reports; nil without
	// WithMetrics.
	stopMetrics func()

	mu           sync.Mutex
	status       error         // before the registrar reports; guarded by mu
	handed       bool          // the registrar reports the status now; guarded by mu
	changed      chan struct{} // closed when status changes; guarded by mu
	deregistered bool          // guarded by mu
	deregErr     error         // guarded by mu
}

// handOver records the first registration's result: from now on the
// registrar reports the status.
func (r *Registration) handOver(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status, r.handed = err, true
	close(r.changed)
	r.changed = make(chan struct{})
}

// Serve serves the server on lis (grpc.Server.Serve), and lets Register
// put the instance in the registry at the moment it accepts connections.
func (r *Registration) Serve(lis net.Listener) error {
	return r.st.server.Serve(servingListener{Listener: lis, st: r.st})
}

// Health returns the server's grpc.health.v1 service.
func (r *Registration) Health() *health.Server { return r.st.health }

// InRegistry reports whether the instance is kept in a registry.
func (r *Registration) InRegistry() bool { return r.registrar != nil }

// Status returns nil while the instance is in the registry (or there is no
// registry), else why it is not: ErrNotServing before the server serves,
// then the registrar's last error; registration keeps being retried in the
// background until Deregister.
func (r *Registration) Status() error {
	r.mu.Lock()
	status, handed := r.status, r.handed
	r.mu.Unlock()
	if sr, ok := r.registrar.(discovery.StatusReporter); ok && handed {
		return sr.Status()
	}
	return status
}

// StatusChanged returns a channel that is closed when Status next changes;
// nil when there is no registry.
func (r *Registration) StatusChanged() <-chan struct{} {
	if r.registrar == nil {
		return nil
	}
	r.mu.Lock()
	handed, ch := r.handed, r.changed
	r.mu.Unlock()
	if sc, ok := r.registrar.(interface{ StatusChanged() <-chan struct{} }); ok && handed {
		return sc.StatusChanged()
	}
	return ch
}

// WaitRegistered waits until the instance is in the registry (Status is
// nil) and returns nil, or until ctx ends and returns why it is not yet.
// Without a registry it returns nil at once.
func (r *Registration) WaitRegistered(ctx context.Context) error {
	for {
		ch := r.StatusChanged()
		err := r.Status()
		if err == nil || ch == nil {
			return err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("%w (%w)", r.Status(), ctx.Err())
		}
	}
}

// Deregister sets the service NOT_SERVING, so that health-checking clients
// stop sending it calls, and removes the instance from the registry. The
// server keeps serving calls already sent. It is idempotent.
func (r *Registration) Deregister(ctx context.Context) error {
	r.st.health.SetServingStatus(r.service, healthgrpc.HealthCheckResponse_NOT_SERVING)
	return r.deregister(ctx)
}

func (r *Registration) deregister(ctx context.Context) error {
	r.mu.Lock()
	if r.deregistered {
		defer r.mu.Unlock()
		return r.deregErr
	}
	r.deregistered = true
	r.mu.Unlock()
	if r.stopMetrics != nil {
		defer r.stopMetrics() // after the last status change
	}
	if r.registrar == nil {
		return nil
	}
	r.cancel()
	r.wg.Wait()
	var err error
	if derr := r.registrar.Deregister(ctx); derr != nil {
		err = fmt.Errorf("lb: %s: deregister: %w", r.service, derr)
	}
	r.mu.Lock()
	r.deregErr = err
	r.mu.Unlock()
	return err
}

// Shutdown takes the whole server down, with every service registered on
// it, in order: the whole server's health (service "", which readiness
// probes and load balancers check) and every service NOT_SERVING; every
// instance out of the registry at once; a wait until every client watching
// the server's health, "" or a service, has been told (at most
// PropagationTimeout); the health Watch streams ended (they never end on
// their own, and GracefulStop waits for them); then GracefulStop, which
// lets calls in flight finish until ctx ends or DrainTimeout passes,
// whichever is first, and then stops the server at once. Calling it again,
// on any Registration of the server, returns the first call's result.
func (r *Registration) Shutdown(ctx context.Context) error {
	err := r.st.shutdown(ctx)
	endRegistrations(r.st)
	return err
}

// LastShutdown returns what the server's Shutdown measured; zero before it.
func (r *Registration) LastShutdown() ShutdownReport {
	select {
	case <-r.st.shutdownDone:
		return r.st.report
	default:
		return ShutdownReport{}
	}
}

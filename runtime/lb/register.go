package lb

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

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

// healthServers holds the health service this package registered on each
// server, so that several services on one server share it.
var healthServers = struct {
	sync.Mutex
	m map[*grpc.Server]*health.Server // guarded by the Mutex
}{m: map[*grpc.Server]*health.Server{}}

const healthServiceName = "grpc.health.v1.Health"

func healthFor(s *grpc.Server, given *health.Server) (*health.Server, error) {
	healthServers.Lock()
	defer healthServers.Unlock()
	_, registered := s.GetServiceInfo()[healthServiceName]
	if h, ok := healthServers.m[s]; ok {
		if given != nil && given != h {
			return nil, fmt.Errorf("lb: a different health server was registered on this server before")
		}
		return h, nil
	}
	h := given
	switch {
	case h == nil && registered:
		return nil, ErrHealthRegistered
	case h == nil:
		h = health.NewServer()
	}
	if !registered {
		healthgrpc.RegisterHealthServer(s, h)
	}
	healthServers.m[s] = h
	return h, nil
}

// Register registers impl as svc's implementation (desc is the generated
// <Svc>_ServiceDesc) and svc's health status as SERVING in the server's
// grpc.health.v1 service. When an advertise address is given and the
// discovery backend supports it (etcd, Consul), it also registers the
// instance in the registry; static and DNS discovery have no registry, so
// there it does nothing more.
//
// Create the listener before calling Register and Serve after it.
func Register(s *grpc.Server, svc *Service, desc *grpc.ServiceDesc, impl any, opts ...RegisterOption) (*Registration, error) {
	var o registerOptions
	for _, opt := range opts {
		opt.applyRegister(&o)
	}
	r := &Registration{server: s, service: svc.FullName}
	if o.advertise != "" {
		addr, err := discovery.ParseAddress(o.advertise)
		if err != nil {
			return nil, fmt.Errorf("lb: %s: advertise address: %w", svc.FullName, err)
		}
		if rc, ok := svc.Discovery.(discovery.RegistrarConfig); ok {
			inst := discovery.Instance{Service: svc.Name, ID: o.id, Address: addr, HealthService: svc.FullName, Metadata: o.metadata}
			if inst.ID == "" {
				inst.ID = defaultInstanceID(svc.Name, addr)
			}
			if r.registrar, err = rc.NewRegistrar(inst, o.registry); err != nil {
				return nil, fmt.Errorf("lb: %s: %w", svc.FullName, err)
			}
		}
	}
	h, err := healthFor(s, o.health)
	if err != nil {
		return nil, err
	}
	r.health = h
	s.RegisterService(desc, impl)
	h.SetServingStatus(svc.FullName, healthgrpc.HealthCheckResponse_SERVING)
	if r.registrar != nil {
		ctx, cancel := context.WithTimeout(context.Background(), RegisterTimeout)
		defer cancel()
		// A failed first attempt is retried in the background: the server
		// still serves, and the error says so.
		if err := r.registrar.Register(ctx); err != nil {
			return r, fmt.Errorf("lb: %s: registering (retrying in the background): %w", svc.FullName, err)
		}
	}
	return r, nil
}

func defaultInstanceID(service, addr string) string {
	host, port, _ := net.SplitHostPort(addr)
	r := strings.NewReplacer("/", "-", ":", "-", "[", "", "]", "")
	return r.Replace(service + "-" + host + "-" + port)
}

// Registration is a service registered on a server by Register.
type Registration struct {
	server    *grpc.Server
	health    *health.Server
	service   string
	registrar discovery.Registrar // nil when the backend has no registry
}

// Health returns the server's grpc.health.v1 service.
func (r *Registration) Health() *health.Server { return r.health }

// InRegistry reports whether the instance is kept in a registry.
func (r *Registration) InRegistry() bool { return r.registrar != nil }

// Status returns nil while the instance is in the registry (or there is no
// registry), else why it is not; registration keeps being retried in the
// background until Deregister.
func (r *Registration) Status() error {
	if sr, ok := r.registrar.(discovery.StatusReporter); ok {
		return sr.Status()
	}
	return nil
}

// StatusChanged returns a channel that is closed when Status next changes
// between nil and an error; nil when the registrar does not tell (no
// registry).
func (r *Registration) StatusChanged() <-chan struct{} {
	if sc, ok := r.registrar.(interface{ StatusChanged() <-chan struct{} }); ok {
		return sc.StatusChanged()
	}
	return nil
}

// Deregister sets the service NOT_SERVING, so that health-checking clients
// stop sending it calls, and removes the instance from the registry. The
// server keeps serving calls already sent.
func (r *Registration) Deregister(ctx context.Context) error {
	r.health.SetServingStatus(r.service, healthgrpc.HealthCheckResponse_NOT_SERVING)
	if r.registrar == nil {
		return nil
	}
	if err := r.registrar.Deregister(ctx); err != nil {
		return fmt.Errorf("lb: %s: deregister: %w", r.service, err)
	}
	return nil
}

// Shutdown deregisters, then stops the server gracefully: calls in flight
// finish unless ctx ends first, in which case the server is stopped at
// once. It stops the whole server, so call it once per server.
func (r *Registration) Shutdown(ctx context.Context) error {
	err := r.Deregister(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.server.GracefulStop()
	}()
	select {
	case <-done:
	case <-ctx.Done():
		r.server.Stop()
		<-done
	}
	healthServers.Lock()
	delete(healthServers.m, r.server)
	healthServers.Unlock()
	return err
}

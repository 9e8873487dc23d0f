package lb

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/health" // client-side health checking
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
	// The light schemes are always there for WithTarget; etcd and Consul
	// come with the generated code that uses them.
	_ "github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/dns"
	_ "github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/static"
)

// ErrNoCredentials is returned by Dial when the caller chose neither
// WithTransportCredentials nor WithInsecure: the generated clients never
// fall back to plaintext on their own. Credentials given with
// WithDialOptions (grpc.WithTransportCredentials) do not count, and the
// error then says so.
var ErrNoCredentials = errors.New("lb: no transport credentials: pass lb.WithTransportCredentials(creds) or lb.WithInsecure()")

// DialOption configures Dial and the generated New<Svc>BalancedClient.
type DialOption interface{ applyDial(*dialOptions) }

// RegisterOption configures Register and the generated
// Register<Svc>BalancedServer.
type RegisterOption interface{ applyRegister(*registerOptions) }

// Option is both a DialOption and a RegisterOption.
type Option interface {
	DialOption
	RegisterOption
}

type dialOptions struct {
	balancer Balancer
	failure  *discovery.FailurePolicy
	registry string
	target   string
	creds    credentials.TransportCredentials
	insecure bool
	block    bool
	metrics  metric.MeterProvider
	grpc     []grpc.DialOption
	locality *Locality // nil: localityFromEnv
	// clientIndex is WithClientIndex's; nil: rendezvous subsets.
	clientIndex *clientIndexOption
}

type dialFunc func(*dialOptions)

func (f dialFunc) applyDial(o *dialOptions) { f(o) }

type registryAddress string

func (a registryAddress) applyDial(o *dialOptions)         { o.registry = string(a) }
func (a registryAddress) applyRegister(o *registerOptions) { o.registry = string(a) }

// WithRegistryAddress replaces the registry address declared in the proto:
// the etcd or Consul address, the DNS server, or, for static discovery, the
// comma-separated address list.
func WithRegistryAddress(addr string) Option { return registryAddress(addr) }

// WithTarget replaces the whole dial target, e.g. "static:///127.0.0.1:50051".
// The balancing policy and method settings still apply. The static and
// lbdns schemes are always available; others need their discovery package
// imported (or grpc.WithResolvers): Dial fails on a target that names a
// scheme ("nope:///x:1") no resolver serves, where grpc-go would take the
// whole target for a DNS name and fail only the calls. A target without a
// scheme ("host:port") gets grpc-go's default, dns.
func WithTarget(target string) DialOption {
	return dialFunc(func(o *dialOptions) { o.target = target })
}

// WithBalancer replaces the balancing policy declared in the proto.
func WithBalancer(b Balancer) DialOption {
	return dialFunc(func(o *dialOptions) { o.balancer = b })
}

// WithFailurePolicy replaces the failure policy declared in the proto
// ((lb.service).on_registry_failure): what calls see when the registry
// cannot be reached or has no valid instance. With WithTarget, give the
// policy as target parameters instead (onfailure, maxstale, fallback).
func WithFailurePolicy(p discovery.FailurePolicy) DialOption {
	return dialFunc(func(o *dialOptions) { o.failure = &p })
}

// WithTransportCredentials secures the connections with creds.
func WithTransportCredentials(creds credentials.TransportCredentials) DialOption {
	return dialFunc(func(o *dialOptions) { o.creds = creds })
}

// WithInsecure makes plaintext connections, for loopback and tests.
func WithInsecure() DialOption {
	return dialFunc(func(o *dialOptions) { o.insecure = true })
}

// WithBlock makes Dial wait until the connection is READY (an instance is
// reachable) or the context ends.
func WithBlock() DialOption {
	return dialFunc(func(o *dialOptions) { o.block = true })
}

// WithDialOptions adds gRPC dial options (interceptors, resolvers, ...).
func WithDialOptions(opts ...grpc.DialOption) DialOption {
	return dialFunc(func(o *dialOptions) { o.grpc = append(o.grpc, opts...) })
}

// Dial opens the balanced client connection of svc: one gRPC ClientConn to
// the discovery target, with the service config of svc (and PoolSize
// transports to each address, all under the one balancer). It does not
// wait for a connection unless WithBlock is given; ctx bounds that wait.
func Dial(ctx context.Context, svc *Service, opts ...DialOption) (*Conn, error) {
	var o dialOptions
	for _, opt := range opts {
		opt.applyDial(&o)
	}
	var creds grpc.DialOption
	switch {
	case o.creds != nil && o.insecure:
		return nil, errors.New("lb: both lb.WithTransportCredentials and lb.WithInsecure given")
	case o.creds != nil:
		creds = grpc.WithTransportCredentials(o.creds)
	case o.insecure:
		creds = grpc.WithTransportCredentials(insecure.NewCredentials())
	default:
		if credentialsAmong(o.grpc) {
			return nil, fmt.Errorf("%w: transport credentials go through those two options, not lb.WithDialOptions, where they were given", ErrNoCredentials)
		}
		return nil, ErrNoCredentials
	}
	target := o.target
	var typed grpc.DialOption
	if target == "" {
		if svc.Discovery == nil {
			return nil, fmt.Errorf("lb: %s: no discovery backend", svc.FullName)
		}
		t, err := svc.Discovery.Target(svc.Name, o.registry)
		if err != nil {
			return nil, fmt.Errorf("lb: %s: %w", svc.FullName, err)
		}
		target = t
		// The settings reach the shared watch as typed values: the target
		// is not parsed again. A resolver of the scheme the caller passes
		// with grpc.WithResolvers comes first and wins.
		if r, ok := svc.Discovery.(discovery.Resolvable); ok {
			spec, err := r.Spec(svc.Name, o.registry)
			if err != nil {
				return nil, fmt.Errorf("lb: %s: %w", svc.FullName, err)
			}
			if svc.Failure != nil {
				spec.Policy = *svc.Failure
			}
			if o.failure != nil {
				spec.Policy = *o.failure
			}
			if err := spec.Policy.Validate(); err != nil {
				return nil, fmt.Errorf("lb: %s: %w", svc.FullName, err)
			}
			scheme, _, _ := strings.Cut(target, ":")
			typed = grpc.WithResolvers(discovery.SpecBuilder(scheme, spec))
		}
	}
	if o.balancer != nil {
		s := *svc
		s.Balancer = o.balancer
		svc = &s
	}
	loc := localityFromEnv()
	if o.locality != nil {
		loc = *o.locality
	}
	env := clientEnv{Locality: loc}
	if ci := o.clientIndex; ci != nil {
		env.index, env.count = ci.index, ci.count
	}
	sc, err := serviceConfig(svc, env)
	if err != nil {
		return nil, err
	}
	gopts := []grpc.DialOption{creds, grpc.WithDefaultServiceConfig(sc)}
	if a, ok := defaultAuthority(svc, o); ok {
		gopts = append(gopts, grpc.WithAuthority(a))
	}
	if kp, ok := svc.Connection.clientParams(); ok {
		gopts = append(gopts, grpc.WithKeepaliveParams(kp))
	}
	if i := hashKeyInterceptor(svc); i != nil {
		gopts = append(gopts, grpc.WithChainUnaryInterceptor(i))
	}
	hedger := newHedger(svc)
	if hedger != nil {
		// After the hash key's interceptor: each attempt has the key.
		gopts = append(gopts, grpc.WithChainUnaryInterceptor(hedger.intercept))
	}
	if o.metrics != nil {
		mopts, err := metricsDialOptions(o.metrics, svc.FullName)
		if err != nil {
			return nil, fmt.Errorf("lb: %s: metrics: %w", svc.FullName, err)
		}
		gopts = append(gopts, mopts...)
		if hedger != nil {
			if hedger.metrics, err = newHedgeMetrics(o.metrics, svc.FullName); err != nil {
				return nil, fmt.Errorf("lb: %s: metrics: %w", svc.FullName, err)
			}
		}
	}
	gopts = append(gopts, o.grpc...)
	if typed != nil {
		gopts = append(gopts, typed)
	}
	cc, err := grpc.NewClient(target, gopts...)
	if err != nil {
		return nil, fmt.Errorf("lb: %s: %w", svc.FullName, err)
	}
	if err := checkScheme(target, cc); err != nil {
		cc.Close()
		return nil, fmt.Errorf("lb: %s: %w", svc.FullName, err)
	}
	c := &Conn{cc: cc, hedger: hedger}
	trackConn(c, target, sc)
	if o.block {
		if err := c.waitReady(ctx, svc.FullName); err != nil {
			c.Close()
			return nil, fmt.Errorf("lb: %s: %w", svc.FullName, err)
		}
	}
	return c, nil
}

// credentialsAmong reports whether opts choose transport credentials
// (grpc.WithTransportCredentials, grpc.WithCredentialsBundle, the
// deprecated grpc.WithInsecure), so that ErrNoCredentials can say where
// they go. A grpc.DialOption is opaque, and every one of them is the same
// closure type, so the question goes to grpc-go itself: NewClient refuses
// options without credentials, and accepts them otherwise without
// resolving or connecting (the channel starts idle). Called only on the
// way to that error.
func credentialsAmong(opts []grpc.DialOption) bool {
	if len(opts) == 0 {
		return false
	}
	cc, err := grpc.NewClient("passthrough:///lb-credentials-check", opts...)
	if err != nil {
		return false
	}
	cc.Close()
	return true
}

// checkScheme returns an error if target names a scheme ("scheme:/..." or
// "scheme://...") that cc found no resolver for, neither in grpc-go's
// registry (resolver.Get) nor among those given with grpc.WithResolvers:
// grpc-go then falls back to its default scheme with the whole target as
// the name to resolve, and only the calls fail. cc's canonical target
// tells which resolver it chose. A "host:port" target parses as an opaque
// URL, or not at all, and keeps the default.
func checkScheme(target string, cc *grpc.ClientConn) error {
	u, err := url.Parse(target)
	if err != nil || u.Scheme == "" || u.Opaque != "" {
		return nil
	}
	if c, err := url.Parse(cc.CanonicalTarget()); err == nil && c.Scheme == u.Scheme {
		return nil
	}
	return fmt.Errorf("target %q: no resolver for scheme %q (import its discovery package, or pass one with grpc.WithResolvers)", target, u.Scheme)
}

// defaultAuthority is the channel's authority, and so the name TLS
// verifies, for a service found in a registry (etcd, Consul): the
// service's name from the proto, not the target's endpoint (an etcd key
// prefix, escaped). DNS and static targets keep gRPC's default, their host
// or address, which certificates and proxies know. So does a name that is
// no host name (an etcd name with '/'), a target given with WithTarget, and
// credentials that name a server; a grpc.WithAuthority given with
// WithDialOptions comes later and wins. Registry data never chooses it.
func defaultAuthority(svc *Service, o dialOptions) (string, bool) {
	if o.target != "" || (o.creds != nil && o.creds.Info().ServerName != "") {
		return "", false
	}
	if _, ok := svc.Discovery.(discovery.RegistrarConfig); !ok {
		return "", false
	}
	if discovery.CheckServiceName(svc.Name, false) != nil {
		return "", false
	}
	return svc.Name, true
}

// Conn is the balanced client connection of one service: a
// grpc.ClientConnInterface over one gRPC ClientConn, whose balancer sees
// every call. With a PoolSize above 1 the ClientConn keeps PoolSize
// transports to each address (package runtime/balancer/pool).
type Conn struct {
	cc     *grpc.ClientConn
	hedger *hedger // nil when no method hedges
}

var _ grpc.ClientConnInterface = (*Conn)(nil)

// Invoke performs a unary call.
func (c *Conn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	return c.cc.Invoke(ctx, method, args, reply, opts...)
}

// NewStream opens a stream.
func (c *Conn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return c.cc.NewStream(ctx, desc, method, opts...)
}

// Conn returns the gRPC ClientConn.
func (c *Conn) Conn() *grpc.ClientConn { return c.cc }

// Close closes the connection.
func (c *Conn) Close() error {
	untrackConn(c)
	return c.cc.Close()
}

func (c *Conn) waitReady(ctx context.Context, service string) error {
	c.cc.Connect()
	for s := c.cc.GetState(); s != connectivity.Ready; s = c.cc.GetState() {
		if s == connectivity.Idle {
			// A lazy policy (grpc-go's ring_hash) connects only when a
			// call is picked: one health check, waiting for ready, makes
			// it. Its answer does not matter, only that a transport is
			// READY.
			var out healthpb.HealthCheckResponse
			_ = c.cc.Invoke(ctx, healthpb.Health_Check_FullMethodName, &healthpb.HealthCheckRequest{Service: service}, &out, grpc.WaitForReady(true))
			if s = c.cc.GetState(); s == connectivity.Ready {
				break
			}
		}
		if !c.cc.WaitForStateChange(ctx, s) {
			return fmt.Errorf("waiting for a ready connection (last state %s): %w", s, ctx.Err())
		}
	}
	return nil
}

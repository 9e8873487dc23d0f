// Package discovery holds what every discovery backend shares: the Config a
// generated client passes to the lb core, the Registrar a server registers
// itself with, the metadata an instance carries, and the one loop that turns
// what a registry says into what gRPC channels see.
//
// Backends live in sub-packages (static, dns, etcd, consul). Each registers
// its gRPC resolver scheme when imported, so plain grpc.NewClient can use it
// too:
//
//	import _ "github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/static"
//
//	conn, err := grpc.NewClient("static:///10.0.0.1:50051,10.0.0.2:50051", ...)
//
// # One loop, one watch per process
//
// A backend implements only a Source: list and watch (or poll) the
// instances of one service, and send them to Updates. Everything else is
// written once, here:
//
//   - jittered exponential backoff when a watch breaks;
//   - an error is reported to the channels (ReportError) once for as long as
//     it stays the same;
//   - a state is published only when it changes; a change costs in
//     proportion to its size, not to the set's (10,000 instances: one put
//     reaches the channels in about 1-2 ms);
//   - a source's order is kept (Consul near, SRV priority); two entries with
//     one address publish it once, with the entry of the lowest ID;
//   - invalid entries are dropped with their reason, logged once per entry
//     and reason, at most five lines a listing plus a summary;
//   - metadata and weights reach the endpoints (MetadataOf, and grpc-go's
//     experimental/balancer/weight, which grpc-go's own balancers read);
//   - the failure policy (below).
//
// The hub runs one watch, and one registry client, per backend, registry,
// service, filters and failure policy in the process, however many channels
// resolve it: a generated client's pool, many clients, and plain
// grpc.NewClient users of the scheme share it. A channel that builds its
// resolver again (out of idle, a new client) gets the last known state at
// once, even while the registry is down. A watch keeps running for
// DefaultLinger after its last channel closed; CloseIdleWatches stops such
// watches at once. A stopped watch leaves its last good set to the next
// watch of the same key, which starts from it (as stale since the registry
// last gave it) as far as the failure policy keeps a set that old. Watches lists the running watches and WatchesChanged
// tells when one publishes.
//
// # Failure policy
//
// What channels see when the registry cannot be reached, or answers with no
// valid instance (every key deleted, every value invalid, every check
// critical), is a FailurePolicy, the same for every backend:
//
//   - KeepLastGood (default): keep calling the last good set, for at most
//     MaxStaleness when set, then fail calls with UNAVAILABLE. The reason is
//     reported to the channel. Before any good answer calls fail with
//     UNAVAILABLE, never hang.
//   - FailFast: calls fail with UNAVAILABLE at once.
//   - StaticFallback: call the Fallback addresses (after MaxStaleness when
//     set) until the registry has valid instances again.
//
// Generated clients take it from (lb.service).on_registry_failure; targets
// take it as parameters of every scheme: onfailure=keep|failfast|fallback,
// maxstale=<duration>, fallback=host:port,host:port.
package discovery

import (
	"context"
	"fmt"
	"maps"
	"time"

	"google.golang.org/grpc/attributes"
	"google.golang.org/grpc/experimental/balancer/weight"
	"google.golang.org/grpc/resolver"
)

// Config is a backend's settings as declared in (lb.service).discovery. The
// generated code holds one as a struct literal of the backend's package.
type Config interface {
	// Target returns the gRPC dial target that resolves service. A
	// non-empty registry replaces the registry address of the settings
	// (the etcd or Consul address, the DNS server, the static address list).
	// Targets never carry secrets.
	Target(service, registry string) (string, error)
}

// Resolvable is a Config whose settings reach its watch as typed values:
// the lb core hands SpecBuilder(scheme, spec) to grpc.WithResolvers instead
// of having the target parsed again. Every backend of this module
// implements it.
type Resolvable interface {
	Config
	// Spec returns the watch of service, at registry when that is not
	// empty, with the backend's default failure policy.
	Spec(service, registry string) (Spec, error)
}

// RegistrarConfig is a Config of a backend that servers can register
// themselves in (etcd, Consul). Static and DNS discovery do not implement it.
type RegistrarConfig interface {
	Config
	// NewRegistrar returns a Registrar for inst in the registry of these
	// settings, or at registry when that is not empty.
	NewRegistrar(inst Instance, registry string) (Registrar, error)
}

// Registrar keeps one instance registered.
type Registrar interface {
	// Register adds the instance to the registry and keeps it there until
	// Deregister. It returns when the first attempt is done; if that attempt
	// failed it returns the error and keeps trying in the background.
	Register(ctx context.Context) error
	// Deregister removes the instance and stops all background work.
	Deregister(ctx context.Context) error
}

// StatusReporter is implemented by Registrars that can tell whether the
// instance is registered right now.
type StatusReporter interface {
	// Status returns nil while the instance is registered, else why not.
	Status() error
}

// Instance is one server as it is registered.
type Instance struct {
	// Service is the registry name of the service.
	Service string
	// ID is unique among the service's instances.
	ID string
	// Address is the "host:port" clients dial.
	Address string
	// HealthService is the service name the instance reports in its
	// grpc.health.v1 service (the proto service's full name); registries
	// that check health call it.
	HealthService string
	// Metadata is published with the instance.
	Metadata Metadata
}

// Metadata is what a registry says of an instance beyond its address. It
// reaches the balancers as an attribute of the resolver.Endpoint (see
// MetadataOf).
type Metadata struct {
	// Weight is the instance's relative weight; 0 means unset.
	Weight uint32
	// Zone is the instance's zone (an availability zone: "us-east-1a"),
	// which zone-aware routing compares with the client's own. Registries
	// hold it under "zone" (etcd metadata, Consul service Meta, else the
	// node's Meta); etcd also reads Kubernetes' label name
	// "topology.kubernetes.io/zone".
	Zone string
	// Region is the instance's region ("us-east-1"), the level above the
	// zone: registries hold it under "region" (and, in etcd,
	// "topology.kubernetes.io/region").
	Region string
	// Version is the version of the instance's software.
	Version string
	// RegisteredAt is when the instance was first registered, by its
	// registrar's clock (Lifecycle.RegisteredAt); zero means unknown.
	// lb_slow_start counts an instance's age from it. Registries hold it
	// under "registered_at" (FormatTime).
	RegisteredAt time.Time
	// Custom holds every other key.
	Custom map[string]string
}

// IsZero reports whether m holds nothing.
func (m Metadata) IsZero() bool {
	return m.Weight == 0 && m.Zone == "" && m.Region == "" && m.Version == "" && m.RegisteredAt.IsZero() && len(m.Custom) == 0
}

// Equal reports whether m and o are the same. attributes.Attributes.Equal
// calls it, so an unchanged instance set does not churn connections.
func (m Metadata) Equal(o any) bool {
	om, ok := o.(Metadata)
	return ok && m.Weight == om.Weight && m.Zone == om.Zone && m.Region == om.Region && m.Version == om.Version &&
		m.RegisteredAt.Equal(om.RegisteredAt) && maps.Equal(m.Custom, om.Custom)
}

// FormatTime writes a registration time as the registries hold it: RFC
// 3339 with nanoseconds, in UTC.
func FormatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// ParseTime reads a registration time that FormatTime wrote, or any RFC
// 3339 time of the years 1-9999, in UTC.
func ParseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("not an RFC 3339 time: %w", err)
	}
	t = t.UTC()
	if y := t.Year(); y < 1 || y > 9999 {
		return time.Time{}, fmt.Errorf("year %d is not in 1-9999", y)
	}
	return t, nil
}

type metadataKey struct{}

// MetadataOf returns the metadata a resolver attached to an endpoint.
func MetadataOf(ep resolver.Endpoint) (Metadata, bool) {
	m, ok := ep.Attributes.Value(metadataKey{}).(Metadata)
	return m, ok
}

// Endpoint returns an endpoint for one address, carrying md unless it is
// zero, and md.Weight also as grpc-go's endpoint weight
// (experimental/balancer/weight), which grpc-go's own balancers read.
func Endpoint(addr string, md Metadata) resolver.Endpoint {
	ep := resolver.Endpoint{Addresses: []resolver.Address{{Addr: addr}}}
	if !md.IsZero() {
		ep.Attributes = attributes.New(metadataKey{}, md)
	}
	if md.Weight > 0 {
		ep = weight.Set(ep, weight.EndpointInfo{Weight: md.Weight})
	}
	return ep
}

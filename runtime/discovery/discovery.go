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
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

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
	// Zone is the instance's zone or datacenter.
	Zone string
	// Version is the version of the instance's software.
	Version string
	// Custom holds every other key.
	Custom map[string]string
}

// IsZero reports whether m holds nothing.
func (m Metadata) IsZero() bool {
	return m.Weight == 0 && m.Zone == "" && m.Version == "" && len(m.Custom) == 0
}

// Equal reports whether m and o are the same. attributes.Attributes.Equal
// calls it, so an unchanged instance set does not churn connections.
func (m Metadata) Equal(o any) bool {
	om, ok := o.(Metadata)
	return ok && m.Weight == om.Weight && m.Zone == om.Zone && m.Version == om.Version && maps.Equal(m.Custom, om.Custom)
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

// ErrBadAddress is wrapped by the errors of ParseAddress.
var ErrBadAddress = errors.New("bad address")

// ParseAddress checks that s is "host:port" that can be dialled: the host
// an IP address or a DNS name, the port in 1-65535. It returns it in
// canonical form: an IPv6 host compressed, an IPv4-mapped IPv6 host as
// IPv4 (so that both spellings of one address are one instance).
//
// A name whose last label is a number (decimal digits, or 0x and hex
// digits) is refused, as the WHATWG URL parser refuses a host that "ends in
// a number": inet_aton, which a cgo resolver uses, reads 127.1, 0x7f.1 and
// 0177.0.0.01 as 127.0.0.1, so such a name is an IPv4 address in another
// spelling (write it dotted-decimal) or nothing (no top-level domain is
// numeric). Labels before the last may be numbers ("10.0.0.1.nip.io").
func ParseAddress(s string) (string, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", fmt.Errorf("%w %q: want host:port", ErrBadAddress, s)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return "", fmt.Errorf("%w %q: port %q is not in 1-65535", ErrBadAddress, s, port)
	}
	if host == "" {
		return "", fmt.Errorf("%w %q: empty host", ErrBadAddress, s)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return netip.AddrPortFrom(ip.Unmap(), uint16(p)).String(), nil
	}
	if err := checkHostName(host); err != nil {
		return "", fmt.Errorf("%w %q: host %q %v", ErrBadAddress, s, host, err)
	}
	return net.JoinHostPort(host, port), nil
}

// checkHostName checks that h is a DNS name (RFC 1123 labels; '_' allowed,
// as service names use it) that does not end in a number, which would make
// it an IP address to inet_aton (see ParseAddress).
func checkHostName(h string) error {
	name := strings.TrimSuffix(h, ".")
	if len(name) == 0 || len(name) > 253 {
		return errors.New("is not a host name: 1 to 253 characters")
	}
	for label := range strings.SplitSeq(name, ".") {
		if len(label) == 0 || len(label) > 63 {
			return errors.New("is not a host name: a label is empty or longer than 63 characters")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return errors.New("is not a host name: a label starts or ends with '-'")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			switch {
			case c >= '0' && c <= '9':
			case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '-', c == '_':
			case c >= utf8.RuneSelf:
				return fmt.Errorf("is not a host name: %s is not allowed (an internationalized name is written in its ASCII form, xn--...)", char(label[i:]))
			default:
				return fmt.Errorf("is not a host name: %s is not allowed", char(label[i:]))
			}
		}
	}
	if last := name[strings.LastIndexByte(name, '.')+1:]; isNumber(last) {
		return fmt.Errorf("is neither an IP address nor a host name: its last label %q is a number (inet_aton reads such a name as an IPv4 address)", last)
	}
	return nil
}

// isNumber reports whether label is what the WHATWG URL parser and
// inet_aton take for a number: decimal digits (or octal, with a leading
// 0), or 0x or 0X and hex digits, none included.
func isNumber(label string) bool {
	digits := "0123456789"
	if len(label) >= 2 && label[0] == '0' && (label[1] == 'x' || label[1] == 'X') {
		label, digits = label[2:], "0123456789abcdefABCDEF"
	} else if label == "" {
		return false
	}
	for i := 0; i < len(label); i++ {
		if strings.IndexByte(digits, label[i]) < 0 {
			return false
		}
	}
	return true
}

// CheckServiceName checks that name can be a service's name in a registry:
// letters, digits, '-', '_' and '.', at most 255 characters (what Consul's
// DNS interface and every target can carry); with slash, also '/' between
// non-empty segments (an etcd key path).
func CheckServiceName(name string, slash bool) error {
	if name == "" || len(name) > 255 {
		return fmt.Errorf("service name %q: 1 to 255 characters", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		case c == '/' && slash:
			if i == 0 || i == len(name)-1 || name[i-1] == '/' {
				return fmt.Errorf("service name %q: an empty segment between '/'", name)
			}
		case c == '/':
			return fmt.Errorf("service name %q: '/' is not allowed here (letters, digits, '-', '_', '.')", name)
		default:
			return fmt.Errorf("service name %q: %s is not allowed (letters, digits, '-', '_', '.')", name, char(name[i:]))
		}
	}
	return nil
}

// char names the character s starts with, for an error: the rune as
// written, or the byte when s does not start with valid UTF-8.
func char(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	if r == utf8.RuneError && n <= 1 {
		return fmt.Sprintf("byte %#x", s[0])
	}
	return fmt.Sprintf("character %q", r)
}

// RegistrationCounter is implemented by Registrars that count how many
// times they put the instance in the registry.
type RegistrationCounter interface {
	// Registrations returns how many times the instance became
	// registered: 1 after the first registration, more when the registry
	// lost it (a lease expired, an agent restarted) and it was put back.
	Registrations() uint64
}

// RegistrationStatus tracks whether a Registrar's instance is registered;
// backends embed it. The zero value is "not registered yet".
type RegistrationStatus struct {
	mu            sync.Mutex
	started       bool          // guarded by mu; false until the first SetStatus
	err           error         // guarded by mu; nil while registered
	changed       chan struct{} // guarded by mu; closed and replaced on a change
	registrations uint64        // guarded by mu; changes to registered
}

// Registrations returns how many times the status became registered.
func (s *RegistrationStatus) Registrations() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.registrations
}

// ErrNotRegistered is the status of a Registrar before its first attempt.
var ErrNotRegistered = errors.New("not registered yet")

// Status returns nil while the instance is registered, else why not.
func (s *RegistrationStatus) Status() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		return ErrNotRegistered
	}
	return s.err
}

// StatusChanged returns a channel that is closed when the status next
// changes between registered and not.
func (s *RegistrationStatus) StatusChanged() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.changed == nil {
		s.changed = make(chan struct{})
	}
	return s.changed
}

// SetStatus records err (nil: registered) and reports whether that changed
// the status between registered and not, for the caller to log.
func (s *RegistrationStatus) SetStatus(err error) (changed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	was := s.err == nil && s.started
	s.started, s.err = true, err
	if was == (err == nil) {
		return false
	}
	if err == nil {
		s.registrations++
	}
	if s.changed != nil {
		close(s.changed)
		s.changed = nil
	}
	return true
}

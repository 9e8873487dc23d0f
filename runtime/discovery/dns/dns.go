// Package dns is discovery through DNS: A/AAAA lookups of a name on a fixed
// port, or SRV lookups that give each instance's port and weight. Unlike
// grpc-go's own dns resolver, which only looks again when a connection fails
// (grpc-go#1663), it looks again every refresh interval, so a new instance
// is seen within that interval.
//
// Importing it registers the "lbdns" resolver scheme (grpc-go's built-in
// "dns" scheme is left alone):
//
//	import _ "github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/dns"
//
//	// A and AAAA records of greeter.internal, port 50051, every 10s:
//	grpc.NewClient("lbdns:///greeter.internal:50051?refresh=10s", ...)
//	// SRV records from a Consul agent's DNS interface:
//	grpc.NewClient("lbdns://127.0.0.1:8600/greeter.service.consul?record=srv", ...)
//
// Target: lbdns://[dns-server]/name[:port][?record=a|srv][&refresh=duration].
// The port is required for A records and not allowed for SRV. refresh
// defaults to 30s. A failed or empty lookup is reported to the channel with
// ReportError and the failure policy of package discovery applies (by
// default the last good addresses are kept: a failure never becomes an empty
// list). ResolveNow triggers a lookup at most once a second. A/AAAA answers
// are sorted by address (servers rotate them); SRV answers keep their
// priority order.
package dns

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/resolver"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/internal/clock"
)

// Scheme is the resolver scheme of DNS targets.
const Scheme = "lbdns"

// Defaults.
const (
	// DefaultRefresh is how often a name is looked up again.
	DefaultRefresh = 30 * time.Second
	// DefaultMinResolveInterval is the shortest time between two lookups
	// asked for with ResolveNow.
	DefaultMinResolveInterval = time.Second
	// LookupTimeout is the deadline of one DNS query.
	LookupTimeout = 10 * time.Second
)

// defaultBuilder is the builder without options: the one the package
// registers and Config.Spec uses, so that both share watches.
var defaultBuilder = newBuilder()

func init() {
	resolver.Register(discovery.NewBuilder(Scheme, defaultBuilder.parse))
}

// Config is the DNS backend of (lb.service).discovery.
type Config struct {
	// Host is the name looked up.
	Host string
	// Port is the port of every instance for A records; 0 for SRV.
	Port uint32
	// SRV selects SRV lookups instead of A/AAAA.
	SRV bool
	// Refresh is how often the name is looked up again; 0 means
	// DefaultRefresh.
	Refresh time.Duration
	// Server is the DNS server, "host:port"; empty means the system
	// resolver.
	Server string
}

// Target returns the lbdns target of c. A non-empty registry replaces
// c.Server.
func (c Config) Target(_, registry string) (string, error) {
	if _, err := c.target(registry); err != nil {
		return "", fmt.Errorf("lbdns: %w", err)
	}
	return c.url(registry).String(), nil
}

func (c Config) url(registry string) *url.URL {
	server := c.Server
	if registry != "" {
		server = registry
	}
	u := &url.URL{Scheme: Scheme, Host: server, Path: "/" + c.Host}
	q := url.Values{}
	if c.SRV {
		q.Set("record", "srv")
	} else {
		u.Path = "/" + net.JoinHostPort(c.Host, strconv.FormatUint(uint64(c.Port), 10))
	}
	if c.Refresh != 0 {
		q.Set("refresh", c.Refresh.String())
	}
	u.RawQuery = q.Encode()
	return u
}

// NetResolver is the part of *net.Resolver the resolver uses; tests put a
// fake in its place with WithNetResolver.
type NetResolver interface {
	LookupHost(ctx context.Context, host string) ([]string, error)
	LookupSRV(ctx context.Context, service, proto, name string) (string, []*net.SRV, error)
}

// Option configures a Builder.
type Option func(*builder)

// WithNetResolver replaces how a NetResolver is made for a DNS server
// address ("" for the system resolver).
func WithNetResolver(f func(server string) NetResolver) Option {
	return func(b *builder) { b.newNetResolver = f }
}

// WithMinResolveInterval sets the shortest time between two lookups asked
// for with ResolveNow. Default DefaultMinResolveInterval.
func WithMinResolveInterval(d time.Duration) Option {
	return func(b *builder) { b.minInterval = d }
}

// NewBuilder returns a Builder of the lbdns scheme, for grpc.WithResolvers.
// The package registers one with default options when imported.
func NewBuilder(opts ...Option) resolver.Builder {
	b := newBuilder(opts...)
	if len(opts) > 0 {
		// Watches of builders with options of their own are theirs.
		b.id = fmt.Sprintf("%p", b)
	}
	return discovery.NewBuilder(Scheme, b.parse)
}

func newBuilder(opts ...Option) *builder {
	b := &builder{newNetResolver: systemNetResolver, minInterval: DefaultMinResolveInterval}
	for _, o := range opts {
		o(b)
	}
	return b
}

func (b *builder) parse(u *url.URL) (discovery.Spec, error) {
	t, err := parseTarget(u)
	if err != nil {
		return discovery.Spec{}, err
	}
	return b.spec(t), nil
}

func systemNetResolver(server string) NetResolver {
	if server == "" {
		return net.DefaultResolver
	}
	d := net.Dialer{Timeout: LookupTimeout}
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, server)
		},
	}
}

type builder struct {
	newNetResolver func(server string) NetResolver
	minInterval    time.Duration
	id             string // Key.Options: empty for the default builder
}

type target struct {
	server  string
	host    string
	port    string // "" for SRV
	srv     bool
	refresh time.Duration
}

// target checks c (with registry as the DNS server, when not empty): the
// one check of a Config, whether it comes from generated code, a hand-built
// value or a target URL.
func (c Config) target(registry string) (target, error) {
	if registry != "" {
		c.Server = registry
	}
	t := target{server: c.Server, host: c.Host, srv: c.SRV, refresh: c.Refresh}
	if t.refresh == 0 {
		t.refresh = DefaultRefresh
	}
	if t.refresh < 0 {
		return target{}, fmt.Errorf("refresh %v is negative", t.refresh)
	}
	if t.server != "" {
		if _, err := discovery.ParseAddress(t.server); err != nil {
			return target{}, fmt.Errorf("DNS server: %w", err)
		}
	}
	if t.srv {
		if c.Port != 0 {
			return target{}, errors.New("a port is not allowed with record=srv: SRV records give the ports")
		}
		if t.host == "" {
			return target{}, errors.New("empty name")
		}
		return t, nil
	}
	addr, err := discovery.ParseAddress(net.JoinHostPort(c.Host, strconv.FormatUint(uint64(c.Port), 10)))
	if err != nil {
		return target{}, fmt.Errorf("name: %w", err)
	}
	t.host, t.port, _ = net.SplitHostPort(addr)
	return t, nil
}

func parseTarget(u *url.URL) (target, error) {
	bad := func(format string, a ...any) error {
		// Never the user info or the query: either could hold a secret.
		return fmt.Errorf("lbdns: target %q: %s", discovery.Redact(u), fmt.Sprintf(format, a...))
	}
	if u.User != nil {
		return target{}, bad("user info is not allowed in a target")
	}
	c := Config{Server: u.Host}
	q := u.Query()
	for k := range q {
		if k != "record" && k != "refresh" {
			return target{}, bad("unknown parameter %q (want record or refresh)", k)
		}
	}
	switch r := q.Get("record"); r {
	case "", "a":
	case "srv":
		c.SRV = true
	default:
		return target{}, bad("record %q is not a or srv", r)
	}
	if s := q.Get("refresh"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return target{}, bad("refresh %q is not a positive duration", s)
		}
		c.Refresh = d
	}
	c.Host = strings.TrimPrefix(u.Path, "/")
	if host, port, err := net.SplitHostPort(c.Host); err == nil {
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil || p == 0 {
			return target{}, bad("name: %v", fmt.Errorf("%w %q: port %q is not in 1-65535", discovery.ErrBadAddress, c.Host, port))
		}
		if c.SRV {
			return target{}, bad("a port is not allowed with record=srv: SRV records give the ports")
		}
		c.Host, c.Port = host, uint32(p)
	} else if !c.SRV {
		return target{}, bad("name: %v", fmt.Errorf("%w %q: want host:port", discovery.ErrBadAddress, c.Host))
	}
	t, err := c.target("")
	if err != nil {
		return target{}, bad("%v", err)
	}
	return t, nil
}

// spec returns the watch of t.
func (b *builder) spec(t target) discovery.Spec {
	name := t.host
	if t.port != "" {
		name = net.JoinHostPort(t.host, t.port)
	}
	filters := ""
	if t.srv {
		filters = "record=srv"
	}
	if t.refresh != DefaultRefresh {
		filters += "&refresh=" + t.refresh.String()
	}
	return discovery.Spec{
		Key: discovery.Key{Scheme: Scheme, Registry: t.server, Service: name, Filters: strings.TrimPrefix(filters, "&"), Options: b.id},
		New: func() (discovery.Source, error) {
			return &source{t: t, net: b.newNetResolver(t.server), minInterval: b.minInterval}, nil
		},
		Backoff: discovery.Backoff{Base: time.Second, Max: min(2*time.Minute, t.refresh)},
	}
}

// Spec returns the watch of c's name.
func (c Config) Spec(_, registry string) (discovery.Spec, error) {
	t, err := c.target(registry)
	if err != nil {
		return discovery.Spec{}, fmt.Errorf("lbdns: %w", err)
	}
	return defaultBuilder.spec(t), nil
}

// source looks the name up every refresh interval, and when a channel asks
// (at most once per minInterval).
type source struct {
	t           target
	net         NetResolver
	minInterval time.Duration
}

func (s *source) Watch(ctx context.Context, u discovery.Updates) error {
	c := u.Clock()
	for {
		insts, dropped, err := s.lookup(ctx)
		lookedUp := c.Now()
		if err != nil {
			return err
		}
		u.Reset(insts, dropped)
		u.Flush()
		timer := c.NewTimer(s.t.refresh)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C():
		case <-u.ResolveNow():
			timer.Stop()
			if !clock.Sleep(ctx, c, lookedUp.Add(s.minInterval).Sub(c.Now())) {
				return nil
			}
		}
	}
}

// NoInstances is the error of an answer without a usable address.
func (s *source) NoInstances() error {
	return fmt.Errorf("lbdns: %s: %w", s.t.host, ErrNoAddresses)
}

// lookup returns the instances of the name: A/AAAA answers sorted by
// address (DNS servers rotate them), SRV answers in priority order.
func (s *source) lookup(ctx context.Context) ([]discovery.Instance, []discovery.Dropped, error) {
	ctx, cancel := context.WithTimeout(ctx, LookupTimeout)
	defer cancel()
	if !s.t.srv {
		ips, err := s.net.LookupHost(ctx, s.t.host)
		if err != nil {
			return nil, nil, fmt.Errorf("lbdns: lookup %s: %w", s.t.host, s.lookupError(err))
		}
		slices.Sort(ips)
		var insts []discovery.Instance
		for _, ip := range ips {
			addr := net.JoinHostPort(ip, s.t.port)
			insts = append(insts, discovery.Instance{ID: addr, Address: addr})
		}
		return insts, nil, nil
	}
	_, srvs, err := s.net.LookupSRV(ctx, "", "", s.t.host)
	if err != nil {
		return nil, nil, fmt.Errorf("lbdns: lookup SRV %s: %w", s.t.host, s.lookupError(err))
	}
	// net sorts by priority and shuffles by weight within one: sort the
	// shuffle away so that an unchanged answer publishes nothing.
	slices.SortStableFunc(srvs, func(a, b *net.SRV) int {
		return cmp.Or(cmp.Compare(a.Priority, b.Priority), strings.Compare(a.Target, b.Target), cmp.Compare(a.Port, b.Port))
	})
	var (
		insts   []discovery.Instance
		dropped []discovery.Dropped
	)
	for _, r := range srvs {
		id := fmt.Sprintf("%s:%d", r.Target, r.Port)
		if r.Port == 0 {
			dropped = append(dropped, discovery.Dropped{ID: id, Reason: errors.New("SRV record with port 0")})
			continue
		}
		ips, err := s.net.LookupHost(ctx, r.Target)
		if err != nil {
			dropped = append(dropped, discovery.Dropped{ID: id, Reason: s.lookupError(err)})
			continue
		}
		slices.Sort(ips)
		for _, ip := range ips {
			addr := net.JoinHostPort(ip, strconv.Itoa(int(r.Port)))
			insts = append(insts, discovery.Instance{ID: addr, Address: addr, Metadata: discovery.Metadata{Weight: uint32(r.Weight)}})
		}
	}
	return insts, dropped, nil
}

// lookupError names the configured DNS server in err, where net names the
// system's (the query went to the configured one).
func (s *source) lookupError(err error) error {
	var de *net.DNSError
	if s.t.server != "" && errors.As(err, &de) {
		c := *de
		c.Server = s.t.server
		return &c
	}
	return err
}

// ErrNoAddresses is reported when a lookup succeeds but yields no usable
// address; the failure policy applies (by default the last good addresses
// are kept).
// It is discovery.ErrNoInstances too.
var ErrNoAddresses = discovery.NoInstancesError("no addresses")

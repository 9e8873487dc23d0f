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
// ReportError and the last good addresses are kept: it never publishes an
// empty list. ResolveNow triggers a lookup at most once a second.
package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc/grpclog"
	"google.golang.org/grpc/resolver"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/internal/retry"
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

var logger = grpclog.Component("lbdns")

func init() {
	resolver.Register(NewBuilder())
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
	server := c.Server
	if registry != "" {
		server = registry
	}
	u := url.URL{Scheme: Scheme, Host: server, Path: "/" + c.Host}
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
	if _, err := parseTarget(&u); err != nil {
		return "", err
	}
	return u.String(), nil
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
	b := &builder{newNetResolver: systemNetResolver, minInterval: DefaultMinResolveInterval}
	for _, o := range opts {
		o(b)
	}
	return b
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
}

func (*builder) Scheme() string { return Scheme }

type target struct {
	server  string
	host    string
	port    string // "" for SRV
	srv     bool
	refresh time.Duration
}

func parseTarget(u *url.URL) (target, error) {
	t := target{server: u.Host, refresh: DefaultRefresh}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("lbdns: target %q: %s", u.String(), fmt.Sprintf(format, a...))
	}
	if t.server != "" {
		if _, err := discovery.ParseAddress(t.server); err != nil {
			return target{}, bad("DNS server: %v", err)
		}
	}
	q := u.Query()
	for k := range q {
		if k != "record" && k != "refresh" {
			return target{}, bad("unknown parameter %q (want record or refresh)", k)
		}
	}
	switch r := q.Get("record"); r {
	case "", "a":
	case "srv":
		t.srv = true
	default:
		return target{}, bad("record %q is not a or srv", r)
	}
	if s := q.Get("refresh"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return target{}, bad("refresh %q is not a positive duration", s)
		}
		t.refresh = d
	}
	name := u.Path
	if len(name) > 0 && name[0] == '/' {
		name = name[1:]
	}
	if t.srv {
		if _, _, err := net.SplitHostPort(name); err == nil {
			return target{}, bad("a port is not allowed with record=srv: SRV records give the ports")
		}
		if name == "" {
			return target{}, bad("empty name")
		}
		t.host = name
		return t, nil
	}
	addr, err := discovery.ParseAddress(name)
	if err != nil {
		return target{}, bad("name: %v", err)
	}
	t.host, t.port, _ = net.SplitHostPort(addr)
	return t, nil
}

// Build validates the target and starts the one goroutine that looks the
// name up; it does not wait for the first answer.
func (b *builder) Build(rt resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	t, err := parseTarget(&rt.URL)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &dnsResolver{
		target:      t,
		cc:          cc,
		net:         b.newNetResolver(t.server),
		minInterval: b.minInterval,
		ctx:         ctx,
		cancel:      cancel,
		resolveNow:  make(chan struct{}, 1),
	}
	r.wg.Add(1)
	go r.watch()
	return r, nil
}

type dnsResolver struct {
	target      target
	cc          resolver.ClientConn
	net         NetResolver
	minInterval time.Duration

	ctx        context.Context
	cancel     context.CancelFunc
	wg         sync.WaitGroup
	resolveNow chan struct{}
}

// ResolveNow asks for a lookup; it never blocks.
func (r *dnsResolver) ResolveNow(resolver.ResolveNowOptions) {
	select {
	case r.resolveNow <- struct{}{}:
	default:
	}
}

// Close stops the lookups and waits for them to end.
func (r *dnsResolver) Close() {
	r.cancel()
	r.wg.Wait()
}

func (r *dnsResolver) watch() {
	defer r.wg.Done()
	var (
		last      resolver.State
		published bool
		failures  int
	)
	for {
		lookedUp := time.Now()
		state, err := r.lookup()
		wait := r.target.refresh
		switch {
		case err != nil:
			if r.ctx.Err() != nil {
				return
			}
			// Keep the last good state: the balancer keeps using it.
			r.cc.ReportError(err)
			wait = min(retry.Backoff(failures, time.Second, 2*time.Minute), r.target.refresh)
			failures++
		case !published || !discovery.EqualStates(last, state):
			failures = 0
			last, published = state, true
			_ = r.cc.UpdateState(state)
		default:
			failures = 0
		}
		timer := time.NewTimer(wait)
		select {
		case <-r.ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		case <-r.resolveNow:
			timer.Stop()
			if !retry.Sleep(r.ctx, time.Until(lookedUp.Add(r.minInterval))) {
				return
			}
		}
	}
}

// lookup returns the current state of the name, or an error if the lookup
// failed or found no address.
func (r *dnsResolver) lookup() (resolver.State, error) {
	ctx, cancel := context.WithTimeout(r.ctx, LookupTimeout)
	defer cancel()
	var eps []resolver.Endpoint
	if !r.target.srv {
		ips, err := r.net.LookupHost(ctx, r.target.host)
		if err != nil {
			return resolver.State{}, fmt.Errorf("lbdns: lookup %s: %w", r.target.host, err)
		}
		for _, ip := range ips {
			eps = append(eps, discovery.Endpoint(net.JoinHostPort(ip, r.target.port), discovery.Metadata{}))
		}
	} else {
		_, srvs, err := r.net.LookupSRV(ctx, "", "", r.target.host)
		if err != nil {
			return resolver.State{}, fmt.Errorf("lbdns: lookup SRV %s: %w", r.target.host, err)
		}
		for _, s := range srvs {
			if s.Port == 0 {
				logger.Warningf("lbdns: SRV %s: dropping record %s with port 0", r.target.host, s.Target)
				continue
			}
			ips, err := r.net.LookupHost(ctx, s.Target)
			if err != nil {
				logger.Warningf("lbdns: SRV %s: dropping target %s: %v", r.target.host, s.Target, err)
				continue
			}
			for _, ip := range ips {
				addr := net.JoinHostPort(ip, strconv.Itoa(int(s.Port)))
				eps = append(eps, discovery.Endpoint(addr, discovery.Metadata{Weight: uint32(s.Weight)}))
			}
		}
	}
	if len(eps) == 0 {
		return resolver.State{}, fmt.Errorf("lbdns: %s: %w", r.target.host, ErrNoAddresses)
	}
	return discovery.State(eps), nil
}

// ErrNoAddresses is reported when a lookup succeeds but yields no usable
// address; the last good addresses are kept.
var ErrNoAddresses = errors.New("no addresses")

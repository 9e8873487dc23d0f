package consul

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/hashicorp/consul/api"
	"golang.org/x/time/rate"
	"google.golang.org/grpc/resolver"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
)

func init() {
	resolver.Register(discovery.NewBuilder(Scheme, defaultBuilder.parse))
}

// Option configures a Builder.
type Option func(*builder)

// WithToken sets the ACL token of the resolver's queries, instead of
// CONSUL_HTTP_TOKEN.
func WithToken(token string) Option {
	return func(b *builder) { b.token = token }
}

// WithRateLimit sets how many blocking queries a second the resolver may
// make, with a burst. The default, 1 a second with a burst of 5, never
// delays a lone change and coalesces a flapping check into at most one
// update a second.
func WithRateLimit(perSecond float64, burst int) Option {
	return func(b *builder) { b.limit, b.burst = rate.Limit(perSecond), burst }
}

// WithWaitTime sets the blocking queries' wait; default WaitTime.
func WithWaitTime(d time.Duration) Option {
	return func(b *builder) { b.wait = d }
}

// NewBuilder returns a Builder of the consul scheme, for grpc.WithResolvers.
// The package registers one with default options when imported; the
// channels of a builder with options share watches among themselves only.
func NewBuilder(opts ...Option) resolver.Builder {
	b := newBuilder(opts...)
	if len(opts) > 0 {
		b.id = fmt.Sprintf("%p", b)
	}
	return discovery.NewBuilder(Scheme, b.parse)
}

func newBuilder(opts ...Option) *builder {
	b := &builder{limit: 1, burst: 5, wait: WaitTime}
	for _, o := range opts {
		o(b)
	}
	return b
}

// defaultBuilder is the builder without options: the one the package
// registers and Config.Spec uses, so that both share watches.
var defaultBuilder = newBuilder()

type builder struct {
	token string
	limit rate.Limit
	burst int
	wait  time.Duration
	id    string // Key.Options: empty for the default builder
}

func (b *builder) parse(u *url.URL) (discovery.Spec, error) {
	t, err := parseTarget(u)
	if err != nil {
		return discovery.Spec{}, err
	}
	return b.spec(t), nil
}

func (b *builder) spec(t target) discovery.Spec {
	f := url.Values{}
	for _, tag := range slices.Sorted(slices.Values(t.Tags)) {
		f.Add("tag", tag)
	}
	if t.Datacenter != "" {
		f.Set("dc", t.Datacenter)
	}
	if t.IncludeFailing {
		f.Set("passing", "false")
	}
	if t.Near != "" {
		f.Set("near", t.Near)
	}
	if t.Consistent {
		f.Set("stale", "false")
	}
	var p discovery.FailurePolicy
	switch {
	case t.FailFast:
		p.Mode = discovery.FailFast
	case t.Grace > 0:
		p.MaxStaleness = t.Grace
	}
	// Channels with other ACL tokens see other answers: they get watches
	// of their own. The key numbers the tokens, it never shows one.
	if n := tokenID(b.token); n > 0 {
		f.Set("token", strconv.Itoa(n))
	}
	return discovery.Spec{
		Key: discovery.Key{Scheme: Scheme, Registry: t.Address, Service: t.service, Filters: f.Encode(), Options: b.id},
		New: func() (discovery.Source, error) {
			client, cfg, err := newClient(t.Address, b.token)
			if err != nil {
				return nil, err
			}
			return &source{
				t:         t,
				client:    client,
				transport: cfg.Transport,
				limiter:   rate.NewLimiter(b.limit, b.burst),
				wait:      b.wait,
				hasToken:  cfg.Token != "" || cfg.TokenFile != "",
				badWeight: map[string]string{},
				warn:      discovery.NewLogLimiter(logger),
			}, nil
		},
		Backoff: discovery.Backoff{Base: 200 * time.Millisecond, Max: 30 * time.Second},
		Policy:  p,
	}
}

// tokenIDs numbers the distinct ACL tokens (a builder's, else the
// environment's token and token file) of the process.
var tokenIDs discovery.IDs[[2]string]

// tokenID returns the number of the token in use.
func tokenID(token string) int {
	if token != "" {
		return tokenIDs.Of([2]string{token, ""})
	}
	return tokenIDs.Of([2]string{os.Getenv("CONSUL_HTTP_TOKEN"), os.Getenv("CONSUL_HTTP_TOKEN_FILE")})
}

// Spec returns the watch of service.
func (c Config) Spec(service, registry string) (discovery.Spec, error) {
	t, err := c.target(service, registry)
	if err != nil {
		return discovery.Spec{}, fmt.Errorf("consul: %w", err)
	}
	return defaultBuilder.spec(t), nil
}

// source follows the service's instances with blocking queries.
type source struct {
	t         target
	client    *api.Client
	transport *http.Transport
	limiter   *rate.Limiter
	wait      time.Duration
	hasToken  bool

	// Owned by the Watch goroutine.
	index     uint64
	hint      string                // added to ErrNoInstances reports
	warn      *discovery.LogLimiter // the bad weights logged, rate-limited
	badWeight map[string]string     // instance ID -> the bad weight logged; ID + "\x00registered_at" -> the bad time logged
}

// Close closes the client's idle connections.
func (s *source) Close() { s.transport.CloseIdleConnections() }

// NoInstances says why the answer was empty.
func (s *source) NoInstances() error {
	return fmt.Errorf("%w (%s)%s", ErrNoInstances, s.t.service, s.hint)
}

func (s *source) Watch(ctx context.Context, u discovery.Updates) error {
	for {
		if s.limiter.Wait(ctx) != nil {
			return nil
		}
		entries, meta, err := s.query(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			// Start over with a query that answers at once.
			s.index = 0
			return fmt.Errorf("consul: %s: %w", s.t.service, err)
		}
		// Consul's rules for the index: never wait on 0 (that would not
		// block), and start over from 0 when it goes backwards.
		switch {
		case meta.LastIndex == 0:
			s.index = 1
		case meta.LastIndex < s.index:
			s.index = 0
		default:
			s.index = meta.LastIndex
		}
		if len(entries) == 0 && meta.ResultsFilteredByACLs {
			u.Fail(ErrFilteredByACLs)
			continue
		}
		s.hint = ""
		if meta.DefaultACLPolicy == "deny" && !s.hasToken {
			s.hint = "; the agent denies by default and no ACL token is set (CONSUL_HTTP_TOKEN or CONSUL_HTTP_TOKEN_FILE)"
		}
		insts := make([]discovery.Instance, 0, len(entries))
		var dropped []discovery.Dropped
		logged := s.badWeight
		s.badWeight = map[string]string{} // only the instances of this answer
		for _, e := range entries {
			inst, err := s.instance(e, logged)
			if err != nil {
				dropped = append(dropped, discovery.Dropped{ID: entryID(e), Reason: err})
				continue
			}
			insts = append(insts, inst)
		}
		u.Reset(insts, dropped)
		u.Flush()
	}
}

// query makes one blocking query.
func (s *source) query(ctx context.Context) ([]*api.ServiceEntry, *api.QueryMeta, error) {
	// Consul adds up to wait/16 of jitter to a blocking query.
	ctx, cancel := context.WithTimeout(ctx, s.wait+s.wait/16+RequestTimeout)
	defer cancel()
	q := (&api.QueryOptions{
		Datacenter: s.t.Datacenter,
		Near:       s.t.Near,
		WaitIndex:  s.index,
		WaitTime:   s.wait,
		AllowStale: !s.t.Consistent,
	}).WithContext(ctx)
	return s.client.Health().ServiceMultipleTags(s.t.service, s.t.Tags, !s.t.IncludeFailing, q)
}

// entryID names an entry: service IDs are unique per node.
func entryID(e *api.ServiceEntry) string {
	var node, id string
	if e.Node != nil {
		node = e.Node.Node
	}
	if e.Service != nil {
		id = e.Service.ID
	}
	return node + "/" + id
}

// instance returns the instance of one health entry: the service address,
// else the node address, and the metadata. A bad weight or registration
// time is logged once and ignored: the instance is kept.
func (s *source) instance(e *api.ServiceEntry, logged map[string]string) (discovery.Instance, error) {
	if e.Service == nil {
		return discovery.Instance{}, errors.New("entry without a service")
	}
	id := entryID(e)
	host := e.Service.Address
	if host == "" && e.Node != nil {
		host = e.Node.Address
	}
	addr, err := discovery.ParseAddress(net.JoinHostPort(host, strconv.Itoa(e.Service.Port)))
	if err != nil {
		return discovery.Instance{}, fmt.Errorf("service address %q, port %d: %w", host, e.Service.Port, err)
	}
	md := discovery.Metadata{Zone: e.Service.Meta["zone"], Region: e.Service.Meta["region"], Version: e.Service.Meta["version"]}
	// Where the service does not say, its node does (Consul node Meta,
	// set once per machine).
	if e.Node != nil {
		if md.Zone == "" {
			md.Zone = e.Node.Meta["zone"]
		}
		if md.Region == "" {
			md.Region = e.Node.Meta["region"]
		}
	}
	if w := e.Service.Meta["weight"]; w != "" {
		n, err := strconv.ParseUint(w, 10, 32)
		if err != nil {
			s.badWeight[id] = w
			if logged[id] != w {
				s.warn.Warningf("consul: %s: instance %s: ignoring meta weight %q: not a whole number", s.t.service, id, w)
			}
		} else {
			md.Weight = uint32(n)
		}
	}
	if md.Weight == 0 && e.Service.Weights.Passing > 0 {
		// An int: beyond 32 bits it is the most a weight can be, not
		// what is left of it.
		md.Weight = uint32(min(uint64(e.Service.Weights.Passing), math.MaxUint32))
	}
	if at := e.Service.Meta[registeredAtKey]; at != "" {
		t, err := discovery.ParseTime(at)
		if err != nil {
			key := id + "\x00" + registeredAtKey
			s.badWeight[key] = at
			if logged[key] != at {
				s.warn.Warningf("consul: %s: instance %s: ignoring meta %s %q: %v", s.t.service, id, registeredAtKey, at, err)
			}
		} else {
			md.RegisteredAt = t
		}
	}
	for k, v := range e.Service.Meta {
		if k != "weight" && k != "zone" && k != "version" && k != registeredAtKey {
			if md.Custom == nil {
				md.Custom = map[string]string{}
			}
			md.Custom[k] = v
		}
	}
	return discovery.Instance{ID: id, Address: addr, Metadata: md}, nil
}

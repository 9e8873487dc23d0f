package consul

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"golang.org/x/time/rate"
	"google.golang.org/grpc/resolver"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/internal/retry"
)

func init() {
	resolver.Register(NewBuilder())
}

// Option configures a Builder.
type Option func(*builder)

// WithToken sets the ACL token of the resolver's queries, instead of
// CONSUL_HTTP_TOKEN.
func WithToken(token string) Option {
	return func(b *builder) { b.token = token }
}

// WithRateLimit sets how many blocking queries a second the resolver may
// make, with a burst. The default, 1 a second with a burst of 3, never
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
// The package registers one with default options when imported.
func NewBuilder(opts ...Option) resolver.Builder {
	b := &builder{limit: 1, burst: 3, wait: WaitTime}
	for _, o := range opts {
		o(b)
	}
	return b
}

type builder struct {
	token string
	limit rate.Limit
	burst int
	wait  time.Duration
}

func (*builder) Scheme() string { return Scheme }

// Build validates the target and starts the one goroutine that queries;
// it does not wait for the agent.
func (b *builder) Build(rt resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	t, err := parseTarget(&rt.URL)
	if err != nil {
		return nil, err
	}
	client, cfg, err := newClient(t.addr, b.token)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &consulResolver{
		t:         t,
		cc:        cc,
		client:    client,
		transport: cfg.Transport,
		limiter:   rate.NewLimiter(b.limit, b.burst),
		wait:      b.wait,
		ctx:       ctx,
		cancel:    cancel,
		hasToken:  cfg.Token != "",
	}
	r.wg.Add(1)
	go r.run()
	return r, nil
}

type consulResolver struct {
	t         target
	cc        resolver.ClientConn
	client    *api.Client
	transport *http.Transport
	limiter   *rate.Limiter
	wait      time.Duration
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup

	// Owned by the run goroutine.
	last      resolver.State
	published bool
	noneSince time.Time // when no instance began to pass; zero while some do
	hint      string    // added to ErrNoInstances reports
	hasToken  bool
}

// ResolveNow does nothing: the blocking query sees every change.
func (r *consulResolver) ResolveNow(resolver.ResolveNowOptions) {}

// Close cancels the long poll and waits for the resolver to stop.
func (r *consulResolver) Close() {
	r.cancel()
	r.wg.Wait()
	r.transport.CloseIdleConnections()
}

func (r *consulResolver) run() {
	defer r.wg.Done()
	var index uint64
	for failures := 0; ; {
		if r.limiter.Wait(r.ctx) != nil {
			return
		}
		entries, meta, err := r.query(index)
		if r.ctx.Err() != nil {
			return
		}
		if err != nil {
			r.cc.ReportError(fmt.Errorf("consul: %s: %w", r.t.service, err))
			if !retry.Sleep(r.ctx, backoff(failures)) {
				return
			}
			failures++
			continue
		}
		failures = 0
		// Consul's rules for the index: never wait on 0 (that would not
		// block), and start over from 0 when it goes backwards.
		switch {
		case meta.LastIndex == 0:
			index = 1
		case meta.LastIndex < index:
			index = 0
		default:
			index = meta.LastIndex
		}
		if len(entries) == 0 && meta.ResultsFilteredByACLs {
			r.cc.ReportError(ErrFilteredByACLs)
			continue
		}
		r.hint = ""
		if meta.DefaultACLPolicy == "deny" && !r.hasToken {
			r.hint = "; the agent denies by default and no ACL token is set (CONSUL_HTTP_TOKEN)"
		}
		r.update(entries)
	}
}

// query makes one blocking query. While no instance passes it waits no
// longer than the rest of the grace period, so the grace ends on time.
func (r *consulResolver) query(index uint64) ([]*api.ServiceEntry, *api.QueryMeta, error) {
	wait := r.wait
	if !r.noneSince.IsZero() {
		wait = max(min(wait, r.t.grace-time.Since(r.noneSince)), time.Millisecond)
	}
	// Consul adds up to wait/16 of jitter to a blocking query.
	ctx, cancel := context.WithTimeout(r.ctx, wait+wait/16+RequestTimeout)
	defer cancel()
	q := (&api.QueryOptions{
		Datacenter: r.t.datacenter,
		Near:       r.t.near,
		WaitIndex:  index,
		WaitTime:   wait,
	}).WithContext(ctx)
	return r.client.Health().ServiceMultipleTags(r.t.service, r.t.tags, r.t.passing, q)
}

// update publishes the instances of entries, or applies the policy for
// none passing.
func (r *consulResolver) update(entries []*api.ServiceEntry) {
	var eps []resolver.Endpoint
	for _, e := range entries {
		ep, err := endpoint(e)
		if err != nil {
			logger.Warningf("consul: %s: dropping an instance: %v", r.t.service, err)
			continue
		}
		eps = append(eps, ep)
	}
	if len(eps) == 0 && !r.t.failFast && (!r.published || len(r.last.Endpoints) == 0) {
		// Nothing to keep: say why rather than publish an empty list.
		r.cc.ReportError(fmt.Errorf("%w (%s)%s", ErrNoInstances, r.t.service, r.hint))
		return
	}
	if len(eps) == 0 && !r.t.failFast {
		if r.noneSince.IsZero() {
			r.noneSince = time.Now()
		}
		if time.Since(r.noneSince) < r.t.grace {
			// Keep the last set; tell the channel why.
			r.cc.ReportError(fmt.Errorf("%w (%s)%s; keeping the last %d for up to %v",
				ErrNoInstances, r.t.service, r.hint, len(r.last.Endpoints), r.t.grace))
			return
		}
	}
	r.noneSince = time.Time{}
	state := discovery.State(eps)
	if r.published && discovery.EqualStates(r.last, state) {
		return
	}
	r.last, r.published = state, true
	_ = r.cc.UpdateState(state)
}

// endpoint returns the endpoint of one health entry: the service address,
// else the node address, and the metadata.
func endpoint(e *api.ServiceEntry) (resolver.Endpoint, error) {
	if e.Service == nil {
		return resolver.Endpoint{}, errors.New("entry without a service")
	}
	host := e.Service.Address
	if host == "" && e.Node != nil {
		host = e.Node.Address
	}
	addr, err := discovery.ParseAddress(net.JoinHostPort(host, strconv.Itoa(e.Service.Port)))
	if err != nil {
		return resolver.Endpoint{}, fmt.Errorf("instance %s: %w", e.Service.ID, err)
	}
	md := discovery.Metadata{Zone: e.Service.Meta["zone"], Version: e.Service.Meta["version"]}
	if w := e.Service.Meta["weight"]; w != "" {
		n, err := strconv.ParseUint(w, 10, 32)
		if err != nil {
			return resolver.Endpoint{}, fmt.Errorf("instance %s: meta weight %q is not a whole number", e.Service.ID, w)
		}
		md.Weight = uint32(n)
	} else if e.Service.Weights.Passing > 0 {
		md.Weight = uint32(e.Service.Weights.Passing)
	}
	for k, v := range e.Service.Meta {
		if k != "weight" && k != "zone" && k != "version" {
			if md.Custom == nil {
				md.Custom = map[string]string{}
			}
			md.Custom[k] = v
		}
	}
	return discovery.Endpoint(addr, md), nil
}

package etcd

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/resolver"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
)

// defaultBuilder is the builder without options: the one the package
// registers and Config.Spec uses, so that both share watches.
var defaultBuilder = newBuilder()

func init() {
	resolver.Register(discovery.NewBuilder(Scheme, defaultBuilder.parse))
}

// Option configures a Builder.
type Option func(*builder)

// WithResyncInterval sets how often the resolver re-reads the whole prefix
// besides watching it. Default ResyncInterval.
func WithResyncInterval(d time.Duration) Option {
	return func(b *builder) { b.resync = d }
}

// WithListHook calls f after every full listing of the prefix, with its
// revision; for tests and metrics.
func WithListHook(f func(revision int64)) Option {
	return func(b *builder) { b.onList = f }
}

// NewBuilder returns a Builder of the etcd scheme, for grpc.WithResolvers.
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
	b := &builder{resync: ResyncInterval, onList: func(int64) {}}
	for _, o := range opts {
		o(b)
	}
	return b
}

type builder struct {
	resync time.Duration
	onList func(revision int64)
	id     string // Key.Options: empty for the default builder
}

func (b *builder) parse(u *url.URL) (discovery.Spec, error) {
	t, err := parseTarget(u)
	if err != nil {
		return discovery.Spec{}, err
	}
	return b.spec(t), nil
}

func (b *builder) spec(t target) discovery.Spec {
	filters := ""
	if n := securityIDs.Of(t.sec); n > 0 {
		// Clients with other TLS settings or credentials are other
		// clients; the key only tells them apart, it shows nothing.
		filters = "security=" + strconv.Itoa(n)
	}
	return discovery.Spec{
		Key: discovery.Key{Scheme: Scheme, Registry: strings.Join(t.endpoints, ","), Service: t.prefix, Filters: filters, Options: b.id},
		New: func() (discovery.Source, error) {
			return &source{t: t, resync: b.resync, onList: b.onList, warned: map[string]string{}, warn: discovery.NewLogLimiter(logger)}, nil
		},
		Backoff: discovery.Backoff{Base: 100 * time.Millisecond, Max: 10 * time.Second},
	}
}

// Spec returns the watch of service's prefix.
func (c Config) Spec(service, registry string) (discovery.Spec, error) {
	t, err := c.target(service, registry)
	if err != nil {
		return discovery.Spec{}, err
	}
	return defaultBuilder.spec(t), nil
}

// securityIDs numbers the distinct security settings of the process.
var securityIDs discovery.IDs[security]

// source lists the prefix, then watches it from the next revision; on a
// compaction it lists again at once, on any other watch error it returns
// (the loop backs off), and it lists again every resync interval in case
// an event was lost.
type source struct {
	t      target
	resync time.Duration
	onList func(revision int64)

	client *clientv3.Client      // made by the first Watch; closed by Close
	hs     *handshakes           // the client's failed TLS handshakes
	warned map[string]string     // key -> the bad weight logged for it
	warn   *discovery.LogLimiter // those warnings, rate-limited
}

// Close closes the etcd client.
func (s *source) Close() {
	if s.client != nil {
		s.client.Close()
	}
}

var errWatchClosed = errors.New("watch channel closed")

func (s *source) Watch(ctx context.Context, u discovery.Updates) error {
	if s.client == nil {
		c, hs, err := newClient(ctx, s.t.endpoints, s.t.sec)
		if err != nil {
			return err
		}
		s.client, s.hs = c, hs
	}
	for {
		rev, err := s.list(ctx, u)
		if err != nil {
			return err
		}
		err = s.watch(ctx, u, rev+1)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, rpctypes.ErrCompacted):
			// The revision we watched from is gone: list again at once.
			logger.Infof("etcd: %s: %v; listing again", s.t.prefix, err)
		case err != nil:
			return err
		}
	}
}

// list reads every instance under the prefix, sends them, and returns the
// revision of the read.
func (s *source) list(ctx context.Context, u discovery.Updates) (int64, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	// A serializable read, as etcd's own naming/endpoints lists: any
	// member answers from its own state, with or without a leader, so a
	// cluster electing one still lists; the watch from the read's
	// revision then brings in whatever the member had not applied yet.
	resp, err := s.client.Get(ctx, s.t.prefix+"/", clientv3.WithPrefix(), clientv3.WithSerializable())
	if err != nil {
		return 0, fmt.Errorf("etcd: %s: list: %w", s.t.prefix, s.hs.explain(err))
	}
	if resp.Header == nil {
		// No revision to watch from: not a list to trust (an empty
		// message decodes so); the last good state stays.
		return 0, fmt.Errorf("etcd: %s: list: the response has no header", s.t.prefix)
	}
	insts := make([]discovery.Instance, 0, len(resp.Kvs))
	var dropped []discovery.Dropped
	for _, kv := range resp.Kvs {
		inst, err := s.instance(kv.Key, kv.Value)
		if err != nil {
			dropped = append(dropped, discovery.Dropped{ID: string(kv.Key), Reason: err})
			continue
		}
		insts = append(insts, inst)
	}
	if len(s.warned) > 0 {
		// Forget the warnings of keys that are gone.
		present := make(map[string]bool, len(resp.Kvs))
		for _, kv := range resp.Kvs {
			present[string(kv.Key)] = true
		}
		for k := range s.warned {
			if !present[k] {
				delete(s.warned, k)
			}
		}
	}
	u.Reset(insts, dropped)
	u.Flush()
	s.onList(resp.Header.Revision)
	return resp.Header.Revision, nil
}

// instance reads the instance of one key. A bad weight is logged once
// per key and value, and ignored.
func (s *source) instance(key, value []byte) (discovery.Instance, error) {
	addr, md, warn, err := parseValue(value)
	if err != nil {
		return discovery.Instance{}, err
	}
	if warn != nil {
		if msg := warn.Error(); s.warned[string(key)] != msg {
			s.warned[string(key)] = msg
			s.warn.Warningf("etcd: %s: %v", key, warn)
		}
	} else if len(s.warned) > 0 {
		delete(s.warned, string(key))
	}
	return discovery.Instance{ID: string(key), Address: addr, Metadata: md}, nil
}

// watch sends the changes after revision rev until the watch fails (the
// error says why) or it is time to re-read the prefix (nil).
func (s *source) watch(ctx context.Context, u discovery.Updates, rev int64) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	// Watch itself blocks while the client cannot open a watch stream (etcd
	// unreachable): it runs aside, so that the probe below still runs, and
	// returns once wctx ends.
	started := make(chan clientv3.WatchChan, 1)
	go func() { started <- s.client.Watch(wctx, s.t.prefix+"/", clientv3.WithPrefix(), clientv3.WithRev(rev)) }()
	var wch clientv3.WatchChan // nil until started: a nil channel never delivers
	defer func() {
		cancel()
		if started != nil {
			<-started
		}
	}()
	c := u.Clock()
	resync := c.NewTimer(s.resync)
	defer resync.Stop()
	// The client reconnects a broken watch quietly and forever: a cheap
	// read every ProbeInterval, with its deadline, tells an unreachable
	// etcd, so that the failure policy applies and the channels are told.
	probe := c.NewTimer(ProbeInterval)
	defer probe.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-resync.C():
			return nil
		case wch = <-started:
			started = nil
		case <-probe.C():
			probe.Reset(ProbeInterval)
			pctx, cancel := withTimeout(ctx)
			_, err := s.client.Get(pctx, s.t.prefix+"/", clientv3.WithPrefix(), clientv3.WithCountOnly(), clientv3.WithSerializable())
			cancel()
			if err != nil && ctx.Err() == nil {
				return fmt.Errorf("etcd: %s: unreachable while watching: %w", s.t.prefix, s.hs.explain(err))
			}
		case wr, ok := <-wch:
			if !ok {
				return fmt.Errorf("etcd: %s: %w", s.t.prefix, errWatchClosed)
			}
			if err := wr.Err(); err != nil {
				return fmt.Errorf("etcd: %s: watch from revision %d: %w", s.t.prefix, rev, err)
			}
			for _, ev := range wr.Events {
				switch ev.Type {
				case clientv3.EventTypePut:
					if inst, err := s.instance(ev.Kv.Key, ev.Kv.Value); err != nil {
						u.Drop(discovery.Dropped{ID: string(ev.Kv.Key), Reason: err})
					} else {
						u.Put(inst)
					}
				case clientv3.EventTypeDelete:
					delete(s.warned, string(ev.Kv.Key))
					u.Delete(string(ev.Kv.Key))
				}
			}
			if len(wr.Events) > 0 {
				u.Flush()
			}
		}
	}
}

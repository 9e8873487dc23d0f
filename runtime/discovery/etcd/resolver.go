package etcd

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/resolver"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/internal/retry"
)

func init() {
	resolver.Register(NewBuilder())
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
// The package registers one with default options when imported.
func NewBuilder(opts ...Option) resolver.Builder {
	b := &builder{resync: ResyncInterval, onList: func(int64) {}}
	for _, o := range opts {
		o(b)
	}
	return b
}

type builder struct {
	resync time.Duration
	onList func(revision int64)
}

func (*builder) Scheme() string { return Scheme }

// Build validates the target and starts the one goroutine that lists and
// watches; it does not wait for etcd.
func (b *builder) Build(rt resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	t, err := parseTarget(&rt.URL)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &etcdResolver{b: b, t: t, cc: cc, ctx: ctx, cancel: cancel}
	r.wg.Add(1)
	go r.run()
	return r, nil
}

type etcdResolver struct {
	b      *builder
	t      target
	cc     resolver.ClientConn
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// Owned by the run goroutine.
	client    *clientv3.Client
	entries   map[string]resolver.Endpoint // key -> endpoint
	last      resolver.State
	published bool
}

// ResolveNow does nothing: the watch delivers every change.
func (r *etcdResolver) ResolveNow(resolver.ResolveNowOptions) {}

// Close stops the watch and waits for it to end.
func (r *etcdResolver) Close() {
	r.cancel()
	r.wg.Wait()
}

var errWatchClosed = errors.New("watch channel closed")

func (r *etcdResolver) run() {
	defer r.wg.Done()
	for failures := 0; ; {
		err := r.connect()
		if err == nil {
			var rev int64
			if rev, err = r.list(); err == nil {
				failures = 0
				err = r.watch(rev + 1)
			}
		}
		if r.ctx.Err() != nil {
			break
		}
		if errors.Is(err, rpctypes.ErrCompacted) {
			// The revision we watched from is gone: list again at once.
			logger.Infof("etcd: %s: %v; listing again", r.t.prefix, err)
			continue
		}
		if err != nil {
			// Keep the last good state: the balancer keeps using it.
			r.cc.ReportError(fmt.Errorf("etcd: %s: %w", r.t.prefix, err))
			if !retry.Sleep(r.ctx, backoff(failures)) {
				break
			}
			failures++
		}
	}
	if r.client != nil {
		r.client.Close()
	}
}

func (r *etcdResolver) connect() error {
	if r.client != nil {
		return nil
	}
	c, err := newClient(r.ctx, r.t.endpoints, r.t.sec)
	if err != nil {
		return err
	}
	r.client = c
	return nil
}

// list reads every instance under the prefix, publishes them, and returns
// the revision of the read.
func (r *etcdResolver) list() (int64, error) {
	ctx, cancel := withTimeout(r.ctx)
	defer cancel()
	resp, err := r.client.Get(ctx, r.t.prefix+"/", clientv3.WithPrefix())
	if err != nil {
		return 0, fmt.Errorf("list: %w", err)
	}
	r.entries = map[string]resolver.Endpoint{}
	for _, kv := range resp.Kvs {
		r.put(string(kv.Key), kv.Value)
	}
	r.publish()
	r.b.onList(resp.Header.Revision)
	return resp.Header.Revision, nil
}

// put records the instance of one key, or drops the key if its value is
// invalid.
func (r *etcdResolver) put(key string, value []byte) {
	addr, md, err := parseValue(value)
	if err != nil {
		delete(r.entries, key)
		logger.Warningf("etcd: dropping %s: %v", key, err)
		return
	}
	r.entries[key] = discovery.Endpoint(addr, md)
}

func (r *etcdResolver) publish() {
	eps := make([]resolver.Endpoint, 0, len(r.entries))
	for _, ep := range r.entries {
		eps = append(eps, ep)
	}
	state := discovery.State(eps)
	if r.published && discovery.EqualStates(r.last, state) {
		return
	}
	r.last, r.published = state, true
	_ = r.cc.UpdateState(state)
}

// watch applies the changes after revision rev until the watch fails (the
// error says why) or it is time to re-read the prefix (nil).
func (r *etcdResolver) watch(rev int64) error {
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(r.ctx))
	defer cancel()
	wch := r.client.Watch(ctx, r.t.prefix+"/", clientv3.WithPrefix(), clientv3.WithRev(rev))
	resync := time.NewTimer(r.b.resync)
	defer resync.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return nil
		case <-resync.C:
			return nil
		case wr, ok := <-wch:
			if !ok {
				return errWatchClosed
			}
			if err := wr.Err(); err != nil {
				return fmt.Errorf("watch from revision %d: %w", rev, err)
			}
			for _, ev := range wr.Events {
				switch ev.Type {
				case clientv3.EventTypePut:
					r.put(string(ev.Kv.Key), ev.Kv.Value)
				case clientv3.EventTypeDelete:
					delete(r.entries, string(ev.Kv.Key))
				}
			}
			if len(wr.Events) > 0 {
				r.publish()
			}
		}
	}
}

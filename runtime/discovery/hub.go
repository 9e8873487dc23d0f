package discovery

import (
	"fmt"
	"net/url"
	"sort"
	"sync"
	"time"

	estats "google.golang.org/grpc/experimental/stats"
	"google.golang.org/grpc/resolver"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/internal/clock"
)

// DefaultLinger is how long a watch keeps running after its last channel
// closed, so that a channel going idle and back, or a client closed and
// made again, finds the last state at once and does not churn the
// registry.
const DefaultLinger = 30 * time.Second

// hub holds the running watches of the process, one per Key, reference
// counted by the channels that subscribe to them.
type hub struct {
	clock  clock.Clock
	linger time.Duration

	mu       sync.Mutex
	watches  map[Key]*hubWatch
	lastGood map[Key]lastGood // of stopped watches, to seed their successors
	stopping sync.WaitGroup   // watches being stopped
}

// lastGood is the last good set of a stopped watch and when the registry
// last gave it.
type lastGood struct {
	eps []resolver.Endpoint
	at  time.Time
}

// maxLastGood bounds how many stopped watches' last good sets the hub keeps.
const maxLastGood = 1024

type hubWatch struct {
	*watch
	refs   int
	linger clock.Timer // running while refs is 0
}

var defaultHub = &hub{clock: clock.Real, linger: DefaultLinger, watches: map[Key]*hubWatch{}, lastGood: map[Key]lastGood{}}

// subscribe joins the watch of spec, starting it if there is none, and
// returns the channel's resolver. The channel is given the watch's last
// state at once, by the subscriber's goroutine: Build does not wait for the
// channel's balancer.
func (h *hub) subscribe(target string, spec Spec, cc resolver.ClientConn, opts resolver.BuildOptions) *subscriber {
	h.mu.Lock()
	hw := h.watches[spec.Key]
	if hw == nil {
		hw = &hubWatch{watch: newWatch(spec, h.clock)}
		if lg, ok := h.lastGood[spec.Key]; ok {
			// The last good set outlives its watch (a channel idle for
			// longer than the linger, the registry down when it comes
			// back): the new watch starts from it.
			delete(h.lastGood, spec.Key)
			hw.seed(lg.eps, lg.at)
		}
		h.watches[spec.Key] = hw
		hw.start()
	}
	hw.refs++
	if hw.linger != nil {
		hw.linger.Stop()
		hw.linger = nil
	}
	h.mu.Unlock()
	s := &subscriber{w: hw.watch, h: h, cc: cc, metrics: opts.MetricsRecorder, target: target, label: spec.Key.String()}
	if s.metrics != nil {
		s.stopReporting = s.metrics.RegisterAsyncReporter(estats.AsyncMetricReporterFunc(s.report), stalenessMetric)
	}
	hw.subscribe(s)
	return s
}

// release removes s; the watch stops after the linger if s was its last
// subscriber.
func (h *hub) release(s *subscriber) {
	s.w.unsubscribe(s)
	h.mu.Lock()
	defer h.mu.Unlock()
	hw := h.watches[s.w.key]
	if hw == nil || hw.watch != s.w {
		return
	}
	if hw.refs--; hw.refs > 0 {
		return
	}
	hw.linger = h.clock.AfterFunc(h.linger, func() {
		h.mu.Lock()
		if hw.refs > 0 || h.watches[hw.key] != hw {
			h.mu.Unlock()
			return
		}
		delete(h.watches, hw.key)
		h.stopping.Add(1)
		h.mu.Unlock()
		h.stop(hw)
	})
}

// stop stops hw, which is out of the map and counted in stopping, and
// keeps its last good set.
func (h *hub) stop(hw *hubWatch) {
	defer h.stopping.Done()
	hw.stop()
	eps, at := hw.lastGood()
	if eps == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.lastGood[hw.key]; !ok && len(h.lastGood) >= maxLastGood {
		var oldest Key
		first := true
		for k, lg := range h.lastGood {
			if first || lg.at.Before(h.lastGood[oldest].at) {
				oldest, first = k, false
			}
		}
		delete(h.lastGood, oldest)
	}
	h.lastGood[hw.key] = lastGood{eps: eps, at: at}
}

// closeIdle stops every watch that has no subscriber now, and waits.
func (h *hub) closeIdle() {
	h.mu.Lock()
	var idle []*hubWatch
	for k, hw := range h.watches {
		if hw.refs == 0 {
			if hw.linger != nil {
				hw.linger.Stop()
			}
			delete(h.watches, k)
			h.stopping.Add(1)
			idle = append(idle, hw)
		}
	}
	h.mu.Unlock()
	for _, hw := range idle {
		h.stop(hw)
	}
	// Also those a linger timer is stopping right now.
	h.stopping.Wait()
}

// CloseIdleWatches stops every watch that no channel uses any more, without
// waiting for its linger to end, and waits for them to stop. Call it at the
// end of a program or a test (before goleak checks) that closed its
// clients.
func CloseIdleWatches() { defaultHub.closeIdle() }

// WatchInfo describes one running watch.
type WatchInfo struct {
	// Key identifies it.
	Key Key
	// Subscribers is the number of channels it feeds.
	Subscribers int
	// Instances is the number of instances it holds.
	Instances int
	// Err is why the registry gives no good answer now; nil while it does.
	Err error
	// FailingSince is when that began; zero while the registry answers.
	FailingSince time.Time
	// ConfirmedAt is when the registry last gave or confirmed the set of
	// instances; zero before it first did.
	ConfirmedAt time.Time
	// Endpoints are the instances it holds, in the registry's order, each
	// address once, with its metadata.
	Endpoints []InstanceInfo
}

// InstanceInfo is one instance a watch holds.
type InstanceInfo struct {
	ID       string
	Address  string
	Metadata Metadata
}

var (
	changedMu sync.Mutex
	changed   = make(chan struct{})
)

// WatchesChanged returns a channel that is closed when any watch of the
// process next publishes a state or reports an error, for a caller of
// Watches to wait on. It tells of the watch, not of its channels: each
// channel is given the new state in its own time, maybe after this.
func WatchesChanged() <-chan struct{} {
	changedMu.Lock()
	defer changedMu.Unlock()
	return changed
}

func notifyChanged() {
	changedMu.Lock()
	defer changedMu.Unlock()
	close(changed)
	changed = make(chan struct{})
}

// Watches returns the watches running in the process, sorted by key: one
// per registry, service, filters and failure policy, however many channels
// resolve them.
func Watches() []WatchInfo {
	h := defaultHub
	h.mu.Lock()
	ws := make([]*hubWatch, 0, len(h.watches))
	for _, hw := range h.watches {
		ws = append(ws, hw)
	}
	h.mu.Unlock()
	out := make([]WatchInfo, 0, len(ws))
	for _, hw := range ws {
		hw.mu.Lock()
		out = append(out, WatchInfo{Key: hw.key, Subscribers: len(hw.subs), Instances: hw.set.len(), Err: hw.view.err, FailingSince: hw.badSince,
			ConfirmedAt: hw.goodAt, Endpoints: hw.set.instances()})
		hw.mu.Unlock()
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Key.String()+out[i].Key.Policy < out[j].Key.String()+out[j].Key.Policy
	})
	return out
}

// NewBuilder returns the resolver.Builder of a scheme: parse turns a
// target into the Spec of its watch, and every channel whose target gives
// an equal Key shares that watch. The failure policy parameters
// ("onfailure", "maxstale", "fallback") are taken out of the target's
// query before parse sees it, and override the policy parse returns.
func NewBuilder(scheme string, parse func(u *url.URL) (Spec, error)) resolver.Builder {
	return &urlBuilder{scheme: scheme, parse: parse}
}

type urlBuilder struct {
	scheme string
	parse  func(u *url.URL) (Spec, error)
}

func (b *urlBuilder) Scheme() string { return b.scheme }

func (b *urlBuilder) Build(t resolver.Target, cc resolver.ClientConn, opts resolver.BuildOptions) (resolver.Resolver, error) {
	u := t.URL
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("%s: target %q: bad query", b.scheme, Redact(&t.URL))
	}
	p, found, err := splitPolicy(q)
	if err != nil {
		return nil, fmt.Errorf("%s: target %q: %w", b.scheme, Redact(&t.URL), err)
	}
	u.RawQuery = q.Encode()
	spec, err := b.parse(&u)
	if err != nil {
		return nil, err
	}
	if found {
		spec.Policy = p
	}
	return Subscribe(t, spec, cc, opts)
}

// Subscribe returns a resolver that feeds cc, the channel of t, from the
// shared watch of spec. Builders call it, with their BuildOptions: the
// channel's MetricsRecorder gets the watch's metrics.
func Subscribe(t resolver.Target, spec Spec, cc resolver.ClientConn, opts resolver.BuildOptions) (resolver.Resolver, error) {
	if err := spec.Policy.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", spec.Key, err)
	}
	spec.Key.Policy = spec.Policy.String()
	return defaultHub.subscribe(Redact(&t.URL), spec, cc, opts), nil
}

// SpecBuilder returns a resolver.Builder of scheme that builds every
// channel's resolver from spec, whatever its target says; a Config hands
// it to grpc.WithResolvers so that its settings reach the watch as typed
// values.
func SpecBuilder(scheme string, spec Spec) resolver.Builder {
	return specBuilder{scheme: scheme, spec: spec}
}

type specBuilder struct {
	scheme string
	spec   Spec
}

func (b specBuilder) Scheme() string { return b.scheme }

func (b specBuilder) Build(t resolver.Target, cc resolver.ClientConn, opts resolver.BuildOptions) (resolver.Resolver, error) {
	return Subscribe(t, b.spec, cc, opts)
}

// Redact returns u without its user info and query, either of which could
// hold a secret, for errors and logs.
func Redact(u *url.URL) string {
	s := u.Scheme + "://" + u.Host + u.Path
	if u.Opaque != "" {
		s = u.Scheme + ":" + u.Opaque
	}
	return s
}

// instances returns the instances s shows, in order, with their metadata.
func (s *instanceSet) instances() []InstanceInfo {
	out := make([]InstanceInfo, 0, len(s.byAddr))
	for _, e := range s.order {
		if e != nil && e.shown {
			out = append(out, InstanceInfo{ID: e.id, Address: e.addr, Metadata: e.md})
		}
	}
	return out
}

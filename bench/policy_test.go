package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	kratosp2c "github.com/go-kratos/kratos/v2/selector/p2c"
	"github.com/zeromicro/go-zero/core/logx"
	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/connectivity"
	estats "google.golang.org/grpc/experimental/stats"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/resolver"

	// grpc-go's policies beside round_robin and pick_first, which are
	// always registered.
	_ "google.golang.org/grpc/balancer/leastrequest"
	_ "google.golang.org/grpc/balancer/ringhash"
	_ "google.golang.org/grpc/balancer/weightedroundrobin"

	// go-zero registers p2c_ewma; kratos registers "selector", which picks
	// with the global selector (p2c, set in init below).
	"github.com/go-kratos/kratos/v2/selector"
	_ "github.com/go-kratos/kratos/v2/transport/grpc"
	_ "github.com/zeromicro/go-zero/zrpc"

	// Ours.
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/consistenthash"
	_ "github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/leastrequest"
	_ "github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/locality"
	_ "github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/outlier"
	_ "github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/p2cewma"
	_ "github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/pickfirst"
	_ "github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/random"
	_ "github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/weighted"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
)

func init() {
	selector.SetGlobalSelector(kratosp2c.NewBuilder())
	// go-zero logs its picker's statistics once a minute, and every call
	// of a zrpc client; none of that is measured here.
	logx.Disable()
}

// hashHeader is the metadata key ring_hash_experimental hashes.
const hashHeader = "x-bench-key"

// policy is one balancer under test.
type policy struct {
	label  string // in benchmark names
	name   string // the registered balancer name
	config string // its loadBalancingConfig, JSON
	ours   bool
	// single: the policy sends every call to one endpoint (pick_first).
	single bool
	// withKey puts a call's hash key on its context (nil: calls have no
	// key); pickInfos gives each call one of 1,024 keys.
	withKey func(ctx context.Context, key string) context.Context
	// local: the policy sends every call to the endpoints in the client's
	// zone, zone a (lb_locality with every endpoint healthy).
	local bool
}

// headerKey is the key as the hashHeader request header.
func headerKey(ctx context.Context, key string) context.Context {
	return metadata.NewOutgoingContext(ctx, metadata.Pairs(hashHeader, key))
}

// contextKey is the key where the generated client puts it for
// lb_consistent_hash.
func contextKey(ctx context.Context, key string) context.Context {
	return consistenthash.WithKey(ctx, []byte(key))
}

// policies are the balancers BenchmarkPick and TestPickersSpread compare.
var policies = []policy{
	{label: "pick_first", name: "pick_first", config: `{}`, single: true},
	{label: "round_robin", name: "round_robin", config: `{}`},
	{label: "least_request_experimental", name: "least_request_experimental", config: `{"choiceCount":2}`},
	{label: "ring_hash_experimental", name: "ring_hash_experimental", config: `{"minRingSize":1024,"maxRingSize":4096,"requestHashHeader":"` + hashHeader + `"}`, withKey: headerKey},
	{label: "weighted_round_robin", name: "weighted_round_robin", config: `{}`},
	{label: "gozero_p2c_ewma", name: "p2c_ewma", config: `{}`},
	{label: "kratos_p2c", name: "selector", config: `{}`},
	{label: "lb_pick_first", name: "lb_pick_first", config: `{}`, ours: true, single: true},
	{label: "lb_random", name: "lb_random", config: `{}`, ours: true},
	{label: "lb_least_request", name: "lb_least_request", config: `{"choiceCount":2}`, ours: true},
	{label: "lb_p2c_ewma", name: "lb_p2c_ewma", config: `{}`, ours: true},
	{label: "lb_weighted_round_robin", name: "lb_weighted_round_robin", config: `{}`, ours: true},
	{label: "lb_consistent_hash", name: "lb_consistent_hash", config: `{}`, ours: true, withKey: contextKey},
	withOutlier(policy{label: "round_robin", name: "round_robin", config: `{}`}),
	withOutlier(policy{label: "lb_least_request", name: "lb_least_request", config: `{"choiceCount":2}`}),
	withOutlier(policy{label: "lb_p2c_ewma", name: "lb_p2c_ewma", config: `{}`}),
	withOutlier(policy{label: "lb_weighted_round_robin", name: "lb_weighted_round_robin", config: `{}`}),
	withLocality(policy{label: "round_robin", name: "round_robin", config: `{}`}),
	withLocality(policy{label: "lb_p2c_ewma", name: "lb_p2c_ewma", config: `{}`}),
}

// withOutlier is p under lb_outlier with its defaults (5 consecutive
// failures; 20% failed of at least 50 calls an interval), labelled
// lb_outlier>label: the same policy, with every pick and Done passing
// through the outlier's picker and its accounting.
func withOutlier(p policy) policy {
	return policy{
		label:   "lb_outlier>" + p.label,
		name:    "lb_outlier",
		config:  fmt.Sprintf(`{"childPolicy":[{%q:%s}]}`, p.name, p.config),
		ours:    true,
		single:  p.single,
		withKey: p.withKey,
	}
}

// withLocality is p under lb_locality, zone-aware routing, as a client in
// zone a of region r, labelled lb_locality>label: with every endpoint
// healthy, each pick chooses the zone level (the only one with a share),
// then p picks among zone a's endpoints.
func withLocality(p policy) policy {
	return policy{
		label:   "lb_locality>" + p.label,
		name:    "lb_locality",
		config:  fmt.Sprintf(`{"zone":%q,"region":"r","childPolicy":[{%q:%s}]}`, clientZone, p.name, p.config),
		ours:    true,
		single:  p.single,
		withKey: p.withKey,
		local:   true,
	}
}

// clientZone is the zone of the lb_locality entries' client.
const clientZone = "a"

// zoneOf is the zone of endpoint i of endpoints: a, b, c, a, ... (10
// endpoints: 4 in a, 3 in b, 3 in c), all of them in region r.
func zoneOf(i int) string { return string(rune('a' + i%3)) }

// endpoints returns n endpoints 10.0.0.1:50051 and on, weighing 1, 2, 3,
// 1, ... for the policies that read registry weights, in zones a, b, c,
// a, ... of region r (discovery.Metadata, which only lb_locality reads).
func endpoints(n int) []resolver.Endpoint {
	eps := make([]resolver.Endpoint, n)
	for i := range eps {
		addr := fmt.Sprintf("10.0.%d.%d:50051", i/250, i%250+1)
		eps[i] = discovery.Endpoint(addr, discovery.Metadata{Weight: uint32(i%3 + 1), Zone: zoneOf(i), Region: "r"})
	}
	return eps
}

// localCount is how many of endpoints(n) are in the client's zone.
func localCount(n int) int { return (n + 2) / 3 }

// resolverState is eps with the Addresses list filled in too, as grpc-go's
// channel and this module's discovery give it: balancers on grpc-go's base
// (go-zero's, kratos's) read only Addresses.
func resolverState(eps []resolver.Endpoint) resolver.State {
	s := resolver.State{Endpoints: eps}
	for _, ep := range eps {
		s.Addresses = append(s.Addresses, ep.Addresses...)
	}
	return s
}

// pickInfos returns the PickInfos calls cycle through: a plain context, or
// for policies that hash a key 1,024 contexts each with its own key.
func pickInfos(p policy) []balancer.PickInfo {
	infos := make([]balancer.PickInfo, 1024)
	for i := range infos {
		ctx := context.Background()
		if p.withKey != nil {
			ctx = p.withKey(ctx, "user-"+strconv.Itoa(i))
		}
		infos[i] = balancer.PickInfo{FullMethodName: "/grpc.testing.TestService/UnaryCall", Ctx: ctx}
	}
	return infos
}

// built is a balancer over a fake channel whose every subchannel is READY.
type built struct {
	cc  *fakeCC
	bal balancer.Balancer
}

// buildReady builds p's balancer alone over n fake endpoints, drives every
// subchannel it asks to connect to READY (and healthy), and returns once
// its latest picker picks without ErrNoSubConnAvailable.
func buildReady(tb testing.TB, p policy, n int) *built {
	tb.Helper()
	return buildReadyOn(tb, p, endpoints(n))
}

// buildReadyOn is buildReady over the endpoints eps.
func buildReadyOn(tb testing.TB, p policy, eps []resolver.Endpoint) *built {
	tb.Helper()
	n := len(eps)
	bb := balancer.Get(p.name)
	if bb == nil {
		tb.Fatalf("balancer %q is not registered", p.name)
	}
	cc := &fakeCC{updated: make(chan struct{}, 1)}
	bal := bb.Build(cc, balancer.BuildOptions{})
	tb.Cleanup(bal.Close)
	s := balancer.ClientConnState{ResolverState: resolverState(eps)}
	if cp, ok := bb.(balancer.ConfigParser); ok {
		cfg, err := cp.ParseConfig(json.RawMessage(p.config))
		if err != nil {
			tb.Fatalf("%s: ParseConfig(%s): %v", p.label, p.config, err)
		}
		s.BalancerConfig = cfg
	}
	if err := bal.UpdateClientConnState(s); err != nil {
		tb.Fatalf("%s: UpdateClientConnState: %v", p.label, err)
	}
	want := n
	switch {
	case p.single:
		want = 1
	case p.local:
		want = localCount(n)
	}
	infos := pickInfos(p)
	deadline := time.Now().Add(10 * time.Second)
	for k := 0; ; k++ {
		if cc.drive() {
			continue
		}
		// A pick that is not failed must be done: least-request policies
		// count it in flight until then.
		picker := cc.latestPicker()
		var err error
		if picker != nil {
			var res balancer.PickResult
			res, err = picker.Pick(infos[k%len(infos)])
			if err == nil && res.Done != nil {
				res.Done(sent)
			}
		}
		if cc.ready() >= want && picker != nil {
			if err == nil {
				return &built{cc: cc, bal: bal}
			}
			if !errors.Is(err, balancer.ErrNoSubConnAvailable) {
				tb.Fatalf("%s: Pick with %d endpoints ready: %v", p.label, want, err)
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s: %d of %d subchannels ready after 10s", p.label, cc.ready(), want)
		}
		// Nothing left to drive: some policies connect only when asked,
		// ring_hash when a pick lands on an idle endpoint (above).
		bal.ExitIdle()
		if k%100 == 99 {
			time.Sleep(time.Millisecond)
		}
	}
}

// fakeCC is the channel a balancer is built over, with nothing behind it:
// subchannels are fakeSubConns that the test turns READY, and UpdateState
// keeps the latest picker. grpc-go calls a balancer from one goroutine at
// a time; so does drive, but a balancer's timers may call fakeCC from
// others, hence mu.
type fakeCC struct {
	balancer.ClientConn // nil: methods not written here panic

	updated chan struct{} // a one-slot signal: UpdateState was called

	mu       sync.Mutex // guards the fields below and the fakeSubConns' flags
	subConns []*fakeSubConn
	picker   balancer.Picker
}

func (cc *fakeCC) NewSubConn(addrs []resolver.Address, opts balancer.NewSubConnOptions) (balancer.SubConn, error) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	sc := &fakeSubConn{cc: cc, addr: addrs[0].Addr, listener: opts.StateListener}
	cc.subConns = append(cc.subConns, sc)
	return sc, nil
}

func (cc *fakeCC) UpdateState(s balancer.State) {
	cc.mu.Lock()
	cc.picker = s.Picker
	cc.mu.Unlock()
	select {
	case cc.updated <- struct{}{}:
	default:
	}
}

func (cc *fakeCC) RemoveSubConn(balancer.SubConn)                       {}
func (cc *fakeCC) UpdateAddresses(balancer.SubConn, []resolver.Address) {}
func (cc *fakeCC) ResolveNow(resolver.ResolveNowOptions)                {}
func (cc *fakeCC) Target() string                                       { return "bench:///fake" }
func (cc *fakeCC) MetricsRecorder() estats.MetricsRecorder              { return noopRecorder{} }

func (cc *fakeCC) latestPicker() balancer.Picker {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.picker
}

// drive takes one subchannel one step towards READY and healthy: one that
// was asked to connect goes CONNECTING then READY, and a health listener
// registered on a READY one hears SERVING. It reports whether there was a
// step to take.
func (cc *fakeCC) drive() bool {
	cc.mu.Lock()
	for _, sc := range cc.subConns {
		switch {
		case sc.connect && !sc.isReady && !sc.shutdown:
			sc.isReady = true
			cc.mu.Unlock()
			sc.listener(balancer.SubConnState{ConnectivityState: connectivity.Connecting})
			sc.listener(balancer.SubConnState{ConnectivityState: connectivity.Ready})
			return true
		case sc.health != nil && !sc.healthy:
			sc.healthy = true
			cc.mu.Unlock()
			sc.health(balancer.SubConnState{ConnectivityState: connectivity.Ready})
			return true
		}
	}
	cc.mu.Unlock()
	return false
}

// ready returns the number of READY subchannels.
func (cc *fakeCC) ready() int {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	n := 0
	for _, sc := range cc.subConns {
		if sc.isReady && !sc.shutdown {
			n++
		}
	}
	return n
}

// fakeSubConn is a subchannel that connects when drive says so.
type fakeSubConn struct {
	balancer.SubConn // nil: methods not written here panic

	cc       *fakeCC
	addr     string
	listener func(balancer.SubConnState)

	// Guarded by cc.mu.
	connect, isReady, shutdown, healthy bool
	health                              func(balancer.SubConnState)
}

func (sc *fakeSubConn) Connect() {
	sc.cc.mu.Lock()
	defer sc.cc.mu.Unlock()
	sc.connect = true
}

func (sc *fakeSubConn) Shutdown() {
	sc.cc.mu.Lock()
	defer sc.cc.mu.Unlock()
	sc.shutdown = true
}

func (sc *fakeSubConn) RegisterHealthListener(l func(balancer.SubConnState)) {
	sc.cc.mu.Lock()
	defer sc.cc.mu.Unlock()
	sc.health, sc.healthy = l, false
}

func (sc *fakeSubConn) UpdateAddresses([]resolver.Address) {}

func (sc *fakeSubConn) String() string { return sc.addr }

// noopRecorder drops the metrics weighted_round_robin records.
type noopRecorder struct {
	estats.MetricsRecorder // nil: methods not written here panic
}

func (noopRecorder) RecordInt64Count(*estats.Int64CountHandle, int64, ...string)             {}
func (noopRecorder) RecordFloat64Count(*estats.Float64CountHandle, float64, ...string)       {}
func (noopRecorder) RecordInt64Histo(*estats.Int64HistoHandle, int64, ...string)             {}
func (noopRecorder) RecordFloat64Histo(*estats.Float64HistoHandle, float64, ...string)       {}
func (noopRecorder) RecordInt64Gauge(*estats.Int64GaugeHandle, int64, ...string)             {}
func (noopRecorder) RecordInt64UpDownCount(*estats.Int64UpDownCountHandle, int64, ...string) {}
func (noopRecorder) RegisterAsyncReporter(estats.AsyncMetricReporter, ...estats.AsyncMetric) func() {
	return func() {}
}

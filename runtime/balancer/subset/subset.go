// Package subset bounds the instances each client connects to (the
// "lb_subset" policy): a parent that hands its child policy a subset of
// the resolver's endpoints.
//
//	{"loadBalancingConfig":[{"lb_subset":{"size":10,"childPolicy":[{"round_robin":{}}]}}]}
//
// Without subsetting, 1,000 clients of 1,000 instances hold a million
// connections, each with its keepalives and buffers.
//
// # Rendezvous (the default)
//
// Each client draws a random seed when its channel starts and keeps the
// Size endpoints whose xxhash of (seed, address) is lowest (gRFC A68, as
// grpc-go's random_subsetting_experimental). An instance that joins or
// leaves changes only the subsets that now hold it, or held it, each by
// that one instance: nothing else moves (go-zero draws its subsets again
// on every change). Over many clients each instance gets Size/N of them
// on average, with the spread of random draws.
//
// # Deterministic
//
// A client that knows its index among the clients and their count
// (lb.WithClientIndex: a StatefulSet ordinal, a job index) takes the
// subsets of the SRE book's deterministic subsetting (chapter 20): the
// clients go in rounds of N/Size; each round shuffles the instances,
// sorted by address, with the round's number as seed and gives each of
// its clients the next Size of them. Every instance gets the same number
// of clients, ±1 when Size does not divide N. A membership change
// reshuffles every round: balance for churn.
//
// # With zones
//
// When the client has a zone (Zone, from lb.WithLocality or LB_ZONE),
// the subset is taken within each locality level (runtime/balancer/
// locality): up to Size instances of the client's zone, up to Size of the
// rest of its region, up to Size of the rest, so that zone-aware routing
// under it keeps enough of the client's own zone.
package subset

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"

	"github.com/cespare/xxhash/v2"
	"google.golang.org/grpc/balancer"
	estats "google.golang.org/grpc/experimental/stats"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/describe"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/internal/parent"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/locality"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
)

// Name is the name of the balancer.
const Name = "lb_subset"

// MaxSize bounds Size.
const MaxSize = 1 << 16

func init() {
	balancer.Register(builder{})
}

// Config is the subsetting of a service.
type Config struct {
	serviceconfig.LoadBalancingConfig `json:"-"`

	// Size is the most instances the client connects to (per locality
	// level with a Zone); required, 1 to MaxSize.
	Size int
	// Index and Count are the client's index among the clients (0 to
	// Count-1) and their count, for deterministic subsetting; Count 0:
	// rendezvous.
	Index, Count int
	// Seed fixes the rendezvous seed, for tests and benchmarks; 0: a
	// random one per channel.
	Seed uint64
	// Zone and Region are the client's, to take the subset within each
	// locality level; empty: one subset of all the instances.
	Zone, Region string

	// Child is the policy over the subset; ParseConfig reads it,
	// BalancerConfig leaves it out.
	Child parent.Child `json:"-"`
}

// BalancerName returns Name.
func (Config) BalancerName() string { return Name }

// BalancerConfig returns the JSON form of c without its child policy.
func (c Config) BalancerConfig() any {
	m := map[string]any{"size": c.Size}
	if c.Count != 0 {
		m["index"], m["count"] = c.Index, c.Count
	}
	if c.Seed != 0 {
		m["seed"] = c.Seed
	}
	if c.Zone != "" {
		m["zone"] = c.Zone
	}
	if c.Region != "" {
		m["region"] = c.Region
	}
	return m
}

// ParseConfig reads {"size": 10, "index": 3, "count": 50, "seed": 7,
// "zone": "a", "region": "r", "childPolicy": [...]}; size and childPolicy
// are required.
func ParseConfig(js json.RawMessage) (*Config, error) {
	var raw struct {
		Size        int                          `json:"size"`
		Index       int                          `json:"index"`
		Count       int                          `json:"count"`
		Seed        uint64                       `json:"seed"`
		Zone        string                       `json:"zone"`
		Region      string                       `json:"region"`
		ChildPolicy []map[string]json.RawMessage `json:"childPolicy"`
	}
	if err := json.Unmarshal(js, &raw); err != nil {
		return nil, fmt.Errorf("%s: config %s: %w", Name, js, err)
	}
	cfg := &Config{Size: raw.Size, Index: raw.Index, Count: raw.Count, Seed: raw.Seed, Zone: raw.Zone, Region: raw.Region}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	child, err := parent.ParseChild(Name, raw.ChildPolicy)
	if err != nil {
		return nil, err
	}
	cfg.Child = child
	return cfg, nil
}

// Validate reports a setting out of range. protoc-gen-go-lb calls it on
// the Config it generates.
func (c Config) Validate() error {
	switch {
	case c.Size < 1 || c.Size > MaxSize:
		return fmt.Errorf("%s: size %d is not in 1-%d", Name, c.Size, MaxSize)
	case c.Count < 0:
		return fmt.Errorf("%s: client count %d must be positive", Name, c.Count)
	case c.Count > 0 && (c.Index < 0 || c.Index >= c.Count):
		return fmt.Errorf("%s: client index %d is not in 0-%d", Name, c.Index, c.Count-1)
	}
	return nil
}

// The metrics, off by default (lb.WithMetrics turns them on).
var (
	sizeMetric = estats.RegisterInt64AsyncGauge(estats.MetricDescriptor{
		Name:        "lb.subset.size",
		Description: "EXPERIMENTAL. Instances in a channel's subset: the ones it connects to.",
		Unit:        "{instance}",
		Labels:      []string{"grpc.target"},
	})
	offeredMetric = estats.RegisterInt64AsyncGauge(estats.MetricDescriptor{
		Name:        "lb.subset.instances",
		Description: "EXPERIMENTAL. Instances the resolver gave the channel, its subset's and the others.",
		Unit:        "{instance}",
		Labels:      []string{"grpc.target"},
	})
)

// MetricNames are the names of the metrics above, for a channel's
// OpenTelemetry options.
var MetricNames = []string{"lb.subset.size", "lb.subset.instances"}

type builder struct{}

func (builder) Name() string { return Name }

func (builder) ParseConfig(js json.RawMessage) (serviceconfig.LoadBalancingConfig, error) {
	return ParseConfig(js)
}

func (builder) Build(cc balancer.ClientConn, opts balancer.BuildOptions) balancer.Balancer {
	b := &subsetBalancer{Balancer: parent.Balancer{CC: cc, Opts: opts}, seed: rand.Uint64(), target: parent.Target(opts)}
	if mr := cc.MetricsRecorder(); mr != nil {
		b.stopReporting = mr.RegisterAsyncReporter(estats.AsyncMetricReporterFunc(func(r estats.AsyncMetricsRecorder) error {
			b.mu.Lock()
			size, offered := len(b.chosen), b.offered
			b.mu.Unlock()
			sizeMetric.Record(r, int64(size), b.target)
			offeredMetric.Record(r, int64(offered), b.target)
			return nil
		}), sizeMetric, offeredMetric)
	}
	if id, ok := describe.ChannelID(opts); ok {
		b.stopDescribing = describe.Register(id, Name, b.describe)
	}
	return b
}

// subsetBalancer passes its child the subset. All calls come from the
// channel's serializer; mu guards what the metrics and the page read.
type subsetBalancer struct {
	parent.Balancer
	seed           uint64
	target         string
	stopReporting  func()
	stopDescribing func()

	mu      sync.Mutex
	chosen  map[string]bool // the subset's addresses
	offered int             // endpoints the resolver gave
}

func (b *subsetBalancer) UpdateClientConnState(s balancer.ClientConnState) error {
	cfg, ok := s.BalancerConfig.(*Config)
	if !ok {
		return fmt.Errorf("%s: no config", Name)
	}
	seed := b.seed
	if cfg.Seed != 0 {
		seed = cfg.Seed
	}
	eps := Choose(*cfg, seed, s.ResolverState.Endpoints)
	chosen := make(map[string]bool, len(eps))
	for _, ep := range eps {
		chosen[ep.Addresses[0].Addr] = true
	}
	b.mu.Lock()
	b.chosen, b.offered = chosen, len(s.ResolverState.Endpoints)
	b.mu.Unlock()
	rs := s.ResolverState
	rs.Endpoints, rs.Addresses = eps, nil
	return b.Update(cfg.Child, balancer.ClientConnState{ResolverState: rs})
}

func (b *subsetBalancer) Close() {
	if b.stopReporting != nil {
		b.stopReporting()
	}
	if b.stopDescribing != nil {
		b.stopDescribing()
	}
	b.Balancer.Close()
}

// describe marks the instances of the subset (the others are not in the
// channel at all).
func (b *subsetBalancer) describe() map[string]string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]string, len(b.chosen))
	for addr := range b.chosen {
		out[addr] = fmt.Sprintf("in subset (%d of %d)", len(b.chosen), b.offered)
	}
	return out
}

// Choose returns the subset of eps a client with cfg (and seed, for
// rendezvous) connects to, in eps's order. Endpoints without an address
// are left out.
func Choose(cfg Config, seed uint64, eps []resolver.Endpoint) []resolver.Endpoint {
	var levels [3][]resolver.Endpoint
	for _, ep := range eps {
		if len(ep.Addresses) == 0 {
			continue
		}
		i := 2
		if cfg.Zone != "" {
			md, _ := discovery.MetadataOf(ep)
			i = locality.Level(cfg.Zone, cfg.Region, md)
		}
		levels[i] = append(levels[i], ep)
	}
	keep := map[string]bool{}
	for _, l := range levels {
		addrs := make([]string, len(l))
		for i, ep := range l {
			addrs[i] = ep.Addresses[0].Addr
		}
		var chosen []string
		if cfg.Count > 0 {
			chosen = Deterministic(cfg.Index, addrs, cfg.Size)
		} else {
			chosen = Rendezvous(seed, addrs, cfg.Size)
		}
		for _, a := range chosen {
			keep[a] = true
		}
	}
	out := make([]resolver.Endpoint, 0, len(keep))
	for _, ep := range eps {
		if len(ep.Addresses) > 0 && keep[ep.Addresses[0].Addr] {
			out = append(out, ep)
		}
	}
	return out
}

// Rendezvous returns the size addresses of addrs whose xxhash seeded with
// seed is lowest (all of them when there are no more than size).
func Rendezvous(seed uint64, addrs []string, size int) []string {
	if len(addrs) <= size {
		return slices.Clone(addrs)
	}
	type scored struct {
		h    uint64
		addr string
	}
	d := xxhash.NewWithSeed(seed)
	s := make([]scored, len(addrs))
	for i, a := range addrs {
		d.ResetWithSeed(seed)
		d.WriteString(a)
		s[i] = scored{d.Sum64(), a}
	}
	slices.SortFunc(s, func(x, y scored) int { return cmp.Or(cmp.Compare(x.h, y.h), cmp.Compare(x.addr, y.addr)) })
	out := make([]string, size)
	for i := range out {
		out[i] = s[i].addr
	}
	return out
}

// Deterministic returns the subset of the client of index: the SRE book's
// deterministic subsetting over addrs sorted.
func Deterministic(index int, addrs []string, size int) []string {
	if len(addrs) <= size {
		return slices.Clone(addrs)
	}
	sorted := slices.Clone(addrs)
	slices.Sort(sorted)
	perRound := len(sorted) / size
	round := index / perRound
	r := rand.New(rand.NewPCG(uint64(round), 0x5eed))
	r.Shuffle(len(sorted), func(i, j int) { sorted[i], sorted[j] = sorted[j], sorted[i] })
	start := (index % perRound) * size
	return sorted[start : start+size]
}

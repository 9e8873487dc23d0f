// Package consistenthash is consistent hashing on a key of each call: calls
// with the same key go to the same instance while it is up, and an
// instance added or removed moves little more than its own share of the
// keys. It is Maglev hashing (Eisenbud et al., NSDI 2016, as in Envoy):
// a lookup table where every instance holds an equal number of slots, so
// the load is even, and where the keys that move when the set changes are
// close to the minimum.
//
// Importing it registers the "lb_consistent_hash" policy. The key of a call
// is, in order:
//   - the hash WithHash or WithKey put on the call's context; the generated
//     client does that for each unary method with (lb.method).hash_key,
//     from the request field's bytes (any bytes: "José", "日本", 0xff 0x00);
//   - the HashKeyHeader request header, hashed the same way (for streams
//     and for plain grpc.NewClient callers);
//   - none: the call goes to a random instance, or, with MissingKey
//     FailMissingKey, fails (with InvalidArgument from the generated
//     client's interceptor when the request's key field is unset, with
//     Internal from the picker otherwise, since grpc-go lets no picker
//     fail a call with InvalidArgument).
//
// The table is built over every instance the resolver gives, READY or not,
// in the order of their addresses, so every client of a fleet maps a key to
// the same instance. While a key's instance is connecting (or idle) its
// calls wait for it, as in grpc-go's ring_hash (gRFC A42); while it is in
// TRANSIENT_FAILURE they go to the next READY instance of the table. With LoadBound c > 0 (consistent
// hashing with bounded loads, Mirrokni et al.), an instance with more than
// c times the mean of calls in flight is skipped the same way, so one hot
// key cannot overload it.
//
//	grpc.NewClient(target,
//		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"lb_consistent_hash":{"loadBound":1.25}}]}`), ...)
//
// A pick allocates nothing; a hash on the context costs one allocation.
package consistenthash

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"
	"google.golang.org/grpc/status"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/internal/ready"
)

// Name is the name of the balancer.
const Name = "lb_consistent_hash"

// Table sizes.
const (
	// DefaultTableSize is the number of slots (2^19-1, a prime; 1 MB):
	// every instance holds TableSize/n of them, give or take one. The keys
	// Maglev moves beyond the minimum when an instance is added or removed
	// shrink as each instance holds more slots: with 100 instances, 655
	// slots each (Envoy's 65537) move 1.55x the minimum, 5,242 slots each
	// about 1.15x.
	DefaultTableSize = 524287
	// MaxTableSize bounds the table.
	MaxTableSize = 4194301
	// MinSlotsPerInstance: with more than TableSize/MinSlotsPerInstance
	// instances, the table grows to the next of the primes 1048573, 2097143
	// and 4194301 that gives each this many. Every client of a fleet grows
	// at the same count, but keys move once when it does.
	MinSlotsPerInstance = 1000
	// MaxInstances is the most instances the table spreads keys over; the
	// first MaxInstances addresses in order are used.
	MaxInstances = 65535
)

// MissingKey is what happens to a call without a key.
type MissingKey int

const (
	// SpreadMissingKey sends each call without a key to a random instance.
	SpreadMissingKey MissingKey = iota
	// FailMissingKey fails each call without a key with InvalidArgument.
	FailMissingKey
)

func (m MissingKey) String() string {
	if m == FailMissingKey {
		return "fail"
	}
	return "spread"
}

func init() {
	balancer.Register(builder{})
}

// Config is the balancer's configuration; the zero value is the default.
type Config struct {
	serviceconfig.LoadBalancingConfig `json:"-"`

	// TableSize is the number of slots of the lookup table, a prime;
	// default DefaultTableSize, at most MaxTableSize.
	TableSize uint64
	// LoadBound, when set, is the most calls in flight an instance takes,
	// as a multiple of the mean over the READY instances; at least 1
	// (1.25 is usual). Default 0: no bound.
	LoadBound float64
	// MissingKey is what happens to a call without a key; default
	// SpreadMissingKey.
	MissingKey MissingKey
}

// BalancerName returns Name.
func (Config) BalancerName() string { return Name }

// BalancerConfig returns the settings that are set, in the JSON that
// ParseConfig reads.
func (c Config) BalancerConfig() any {
	m := map[string]any{}
	if c.TableSize != 0 {
		m["tableSize"] = c.TableSize
	}
	if c.LoadBound != 0 {
		m["loadBound"] = c.LoadBound
	}
	if c.MissingKey != SpreadMissingKey {
		m["missingKey"] = c.MissingKey.String()
	}
	return m
}

// ParseConfig reads {"tableSize": 65537, "loadBound": 1.25, "missingKey":
// "spread"|"fail"}: defaults first, then the JSON, then checks.
func ParseConfig(js json.RawMessage) (*Config, error) {
	cfg := &Config{TableSize: DefaultTableSize}
	var raw struct {
		TableSize  *uint64  `json:"tableSize"`
		LoadBound  *float64 `json:"loadBound"`
		MissingKey *string  `json:"missingKey"`
	}
	if len(js) > 0 {
		dec := json.NewDecoder(strings.NewReader(string(js)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("%s: config %s: %w", Name, js, err)
		}
	}
	if raw.TableSize != nil {
		cfg.TableSize = *raw.TableSize
	}
	if raw.LoadBound != nil {
		cfg.LoadBound = *raw.LoadBound
	}
	if raw.MissingKey != nil {
		switch *raw.MissingKey {
		case "spread", "":
		case "fail":
			cfg.MissingKey = FailMissingKey
		default:
			return nil, fmt.Errorf("%s: missingKey %q: want \"spread\" or \"fail\"", Name, *raw.MissingKey)
		}
	}
	if err := cfg.check(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Validate reports a setting the policy refuses; a zero TableSize is
// DefaultTableSize, as BalancerConfig leaves it out. protoc-gen-go-lb calls
// it on the Config it generates.
func (c Config) Validate() error {
	if c.TableSize == 0 {
		c.TableSize = DefaultTableSize
	}
	return c.check()
}

// check validates c once its defaults are applied. An infinite LoadBound,
// which the service config's JSON cannot carry, is refused too.
func (c *Config) check() error {
	if c.TableSize > MaxTableSize || !isPrime(c.TableSize) {
		return fmt.Errorf("%s: tableSize %d must be a prime of at most %d", Name, c.TableSize, MaxTableSize)
	}
	if c.LoadBound != 0 && !(c.LoadBound >= 1 && !math.IsInf(c.LoadBound, 1)) {
		return fmt.Errorf("%s: loadBound %v must be at least 1 (or 0: no bound)", Name, c.LoadBound)
	}
	return nil
}

type builder struct{}

func (builder) Name() string { return Name }

func (builder) ParseConfig(js json.RawMessage) (serviceconfig.LoadBalancingConfig, error) {
	return ParseConfig(js)
}

func (builder) Build(cc balancer.ClientConn, opts balancer.BuildOptions) balancer.Balancer {
	var (
		total atomic.Int64 // calls in flight under a load bound, over all instances
		// The last table, for the instances of names (sorted addresses);
		// rebuilt only when they change. newPicker runs under the
		// balancer's lock.
		names []string
		tbl   *table
		size  int
	)
	return ready.NewBalancerAll(cc, opts, func(children []ready.Child[state], lbc serviceconfig.LoadBalancingConfig) balancer.Picker {
		cfg, ok := lbc.(*Config)
		if !ok {
			cfg = &Config{TableSize: DefaultTableSize}
		}
		sorted := slices.Clone(children)
		slices.SortFunc(sorted, func(a, b ready.Child[state]) int {
			return strings.Compare(a.Endpoint.Addresses[0].Addr, b.Endpoint.Addresses[0].Addr)
		})
		if len(sorted) > MaxInstances {
			sorted = sorted[:MaxInstances]
		}
		now := make([]string, len(sorted))
		for i, c := range sorted {
			now[i] = c.Endpoint.Addresses[0].Addr
		}
		want := tableSize(int(cfg.TableSize), len(now))
		if tbl == nil || size != want || !slices.Equal(names, now) {
			names, size, tbl = now, want, newTable(now, want)
		}
		p := &picker{table: tbl, children: make([]child, len(sorted)), fail: cfg.MissingKey == FailMissingKey, bound: cfg.LoadBound, total: &total}
		for i, c := range sorted {
			st := c.State
			if st.done == nil { // a new endpoint: set up its Done once
				st.total = &total
				st.done = st.finish
			}
			st.share.Store(math.Float64bits(float64(tbl.owned[i]) / float64(len(tbl.slots))))
			p.children[i] = child{picker: c.Picker, ready: c.Ready(), st: st,
				wait: c.Connectivity == connectivity.Connecting || c.Connectivity == connectivity.Idle}
			if c.Ready() {
				p.ready++
			}
		}
		return p
	})
}

// tableSize is size, or the next size on a fixed ladder that gives each of
// n instances MinSlotsPerInstance slots, or MaxTableSize.
func tableSize(size, n int) int {
	for _, m := range [...]int{1048573, 2097143, MaxTableSize} {
		if n*MinSlotsPerInstance <= size {
			break
		}
		size = max(size, m)
	}
	return size
}

// state is one endpoint's calls in flight under a load bound; it lives as
// long as the endpoint.
type state struct {
	inflight atomic.Int64
	total    *atomic.Int64
	done     func(balancer.DoneInfo) // finish, made once
	share    atomic.Uint64           // float64 bits: the share of the table's slots it holds, set with each picker
}

// Describe shows the endpoint's share of the table (the share of keys it
// owns) and its calls in flight on the live page.
func (s *state) Describe(resolver.Endpoint) string {
	return fmt.Sprintf("table %.1f%%, in flight %d", 100*math.Float64frombits(s.share.Load()), s.inflight.Load())
}

func (s *state) finish(balancer.DoneInfo) {
	s.inflight.Add(-1)
	s.total.Add(-1)
}

type child struct {
	picker balancer.Picker
	ready  bool
	// wait: the endpoint is CONNECTING or IDLE, so a call whose key it
	// owns waits for it (its picker starts connecting an IDLE one).
	wait bool
	st   *state
}

type picker struct {
	table    *table
	children []child // in the table's order
	ready    int     // how many children are READY (at least one)
	fail     bool    // calls without a key fail
	bound    float64 // the load bound; 0: none
	total    *atomic.Int64
}

// errNoKey fails calls without a key under FailMissingKey. Its code is
// Internal: grpc-go does not let a picker fail a call with InvalidArgument
// (gRFC A54), so the generated client's interceptor fails unary calls with
// an unset key before they reach the picker.
var errNoKey = status.Error(codes.Internal, Name+": the call has no hash key: set the method's (lb.method).hash_key field, WithKey on the context or the "+HashKeyHeader+" header")

func (p *picker) Pick(info balancer.PickInfo) (balancer.PickResult, error) {
	h, ok := HashFromContext(info.Ctx)
	if !ok {
		if v := metadata.ValueFromOutgoingContext(info.Ctx, HashKeyHeader); len(v) > 0 {
			h, ok = HashString(v[0]), true
		}
	}
	if !ok {
		if p.fail {
			return balancer.PickResult{}, errNoKey
		}
		h = rand.Uint64()
	}
	if c := &p.children[p.table.slots[p.table.slot(h)]]; ok && c.wait {
		// The key's own instance is connecting (as after a reconnect):
		// the call waits for it rather than go elsewhere (gRFC A42).
		return c.picker.Pick(info)
	}
	// The key's slot, or the next slots while their instance is not READY
	// or over the bound.
	slots := p.table.slots
	s := p.table.slot(h)
	var limit float64
	if p.bound != 0 {
		limit = math.Ceil(p.bound * float64(p.total.Load()+1) / float64(p.ready))
	}
	var first *child // the first READY one, should every one be over the bound
	for range slots {
		c := &p.children[slots[s]]
		if c.ready {
			if p.bound == 0 {
				return c.picker.Pick(info)
			}
			if float64(c.st.inflight.Load()+1) <= limit {
				return p.pickBounded(c, info)
			}
			if first == nil {
				first = c
			}
		}
		if s++; s == len(slots) {
			s = 0
		}
	}
	if first != nil { // only when concurrent calls moved the mean meanwhile
		return p.pickBounded(first, info)
	}
	return balancer.PickResult{}, balancer.ErrNoSubConnAvailable
}

// pickBounded picks c and counts the call in flight until it is done.
func (p *picker) pickBounded(c *child, info balancer.PickInfo) (balancer.PickResult, error) {
	res, err := c.picker.Pick(info)
	if err != nil {
		return res, err
	}
	c.st.inflight.Add(1)
	p.total.Add(1)
	if inner := res.Done; inner != nil {
		res.Done = func(di balancer.DoneInfo) { c.st.done(di); inner(di) }
	} else {
		res.Done = c.st.done
	}
	return res, nil
}

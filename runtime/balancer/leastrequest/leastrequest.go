// Package leastrequest is a balancer that sends each call to the endpoint
// with the fewest calls in flight among ChoiceCount distinct ones chosen at
// random (the power of d choices), lock-free: an atomic counter per endpoint, and no
// allocation per call.
//
// Importing it registers the "lb_least_request" policy (grpc-go's own is
// "least_request_experimental"):
//
//	grpc.NewClient(target,
//		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"lb_least_request":{"choiceCount":2}}]}`), ...)
//
// Ties go to the first endpoint drawn. It is built on grpc-go's
// endpointsharding + pick_first, so client-side health checking works.
package leastrequest

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync/atomic"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/internal/fastrand"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/internal/ready"
)

// Name is the name of the balancer.
const Name = "lb_least_request"

// Limits and defaults of ChoiceCount.
const (
	DefaultChoiceCount = 2
	MinChoiceCount     = 2
	MaxChoiceCount     = 10
)

func init() {
	balancer.Register(builder{})
}

// Config is the balancer's configuration.
type Config struct {
	serviceconfig.LoadBalancingConfig `json:"-"`

	// ChoiceCount is how many endpoints are drawn; default
	// DefaultChoiceCount, MinChoiceCount to MaxChoiceCount.
	ChoiceCount uint32 `json:"choiceCount,omitempty"`
}

// BalancerName returns Name.
func (Config) BalancerName() string { return Name }

// BalancerConfig returns {"choiceCount": n}, or {} for the default.
func (c Config) BalancerConfig() any {
	if c.ChoiceCount == 0 {
		return struct{}{}
	}
	return map[string]uint32{"choiceCount": c.ChoiceCount}
}

// ParseConfig reads {"choiceCount": n}: defaults first, then the JSON, then
// checks.
func ParseConfig(js json.RawMessage) (*Config, error) {
	cfg := &Config{ChoiceCount: DefaultChoiceCount}
	if len(js) > 0 {
		if err := json.Unmarshal(js, cfg); err != nil {
			return nil, fmt.Errorf("%s: config %s: %w", Name, js, err)
		}
	}
	if err := cfg.check(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Validate reports a ChoiceCount out of MinChoiceCount-MaxChoiceCount; 0
// is DefaultChoiceCount, as BalancerConfig leaves it out. protoc-gen-go-lb
// calls it on the Config it generates.
func (c Config) Validate() error {
	if c.ChoiceCount == 0 {
		c.ChoiceCount = DefaultChoiceCount
	}
	return c.check()
}

// check validates c once its defaults are applied.
func (c *Config) check() error {
	if c.ChoiceCount < MinChoiceCount || c.ChoiceCount > MaxChoiceCount {
		return fmt.Errorf("%s: choiceCount %d is not in %d-%d", Name, c.ChoiceCount, MinChoiceCount, MaxChoiceCount)
	}
	return nil
}

type builder struct{}

func (builder) Name() string { return Name }

func (builder) ParseConfig(js json.RawMessage) (serviceconfig.LoadBalancingConfig, error) {
	return ParseConfig(js)
}

func (builder) Build(cc balancer.ClientConn, opts balancer.BuildOptions) balancer.Balancer {
	return ready.NewBalancer(cc, opts, func(children []ready.Child[counter], cfg serviceconfig.LoadBalancingConfig) balancer.Picker {
		n := uint32(DefaultChoiceCount)
		if c, ok := cfg.(*Config); ok {
			n = c.ChoiceCount
		}
		p := &picker{children: make([]child, len(children)), choices: int(n)}
		for i, c := range children {
			p.children[i] = child{picker: c.Picker, st: c.State}
		}
		return p
	})
}

// counter is one endpoint's calls in flight, with its Done made once so
// that a pick allocates nothing. It fills a cache line pair of its own, so
// that calls to one endpoint do not slow those to its neighbours in memory.
type counter struct {
	inflight atomic.Int64
	done     func(balancer.DoneInfo)
	_        [128 - 16]byte
}

// Init makes the Done of the endpoint's calls.
func (c *counter) Init() { c.done = func(balancer.DoneInfo) { c.inflight.Add(-1) } }

// Describe shows the endpoint's calls in flight on the live page.
func (c *counter) Describe(resolver.Endpoint) string {
	return fmt.Sprintf("in flight %d", c.inflight.Load())
}

// child is what a pick reads of an endpoint.
type child struct {
	picker balancer.Picker
	st     *counter
}

type picker struct {
	children []child
	choices  int
}

func (p *picker) Pick(info balancer.PickInfo) (balancer.PickResult, error) {
	n := len(p.children)
	var best *child
	switch k := min(p.choices, n); {
	case k <= 1:
		best = &p.children[0]
	case k == 2:
		i, j := fastrand.Pair(fastrand.Uint64(), n)
		best = &p.children[i]
		if c := &p.children[j]; c.st.inflight.Load() < best.st.inflight.Load() {
			best = c
		}
	default:
		// k distinct endpoints: drawn with replacement, a busy endpoint
		// drawn twice would be picked k^-1 of the time whatever its load.
		var drawn [MaxChoiceCount]int
		drawn[0] = fastrand.IntN(n)
		best = &p.children[drawn[0]]
		for d := 1; d < k; {
			i := fastrand.IntN(n)
			if slices.Contains(drawn[:d], i) {
				continue
			}
			drawn[d] = i
			d++
			if c := &p.children[i]; c.st.inflight.Load() < best.st.inflight.Load() {
				best = c
			}
		}
	}
	res, err := best.picker.Pick(info)
	if err != nil {
		return res, err
	}
	st := best.st
	st.inflight.Add(1)
	if inner := res.Done; inner != nil {
		res.Done = func(di balancer.DoneInfo) {
			st.inflight.Add(-1)
			inner(di)
		}
	} else {
		res.Done = st.done
	}
	return res, nil
}

// Package hedge sends each attempt of a hedged call to an instance the call
// has not tried yet: a parent policy over any child policy whose picker,
// for a call that carries Attempts (WithAttempts), picks again while the
// child's pick lands on an instance the call already used. The generated
// client's hedging puts Attempts on each hedged call; other calls pass
// straight through, for the cost of a context lookup.
//
// Importing it registers the "lb_hedge" policy:
//
//	{"loadBalancingConfig":[{"lb_hedge":{"childPolicy":[{"lb_p2c_ewma":{}}]}}]}
//
// Instances are told apart by address (the pool's copies of one address are
// one instance).
package hedge

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/endpointsharding"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"
	"google.golang.org/grpc/status"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/internal/fastrand"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/internal/parent"
)

// Name is the name of the balancer.
const Name = "lb_hedge"

// repicks bounds how often one attempt picks again to find an instance the
// call has not tried.
const repicks = 16

func init() {
	balancer.Register(builder{})
}

// Attempts are the instances one call has been sent to.
type Attempts struct {
	mu   sync.Mutex
	used []string
}

// claim records addr for the call and reports true, or reports false when
// the call has used it already.
func (a *Attempts) claim(addr string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if slices.Contains(a.used, addr) {
		return false
	}
	a.used = append(a.used, addr)
	return true
}

// started reports whether an attempt of the call has picked an instance.
func (a *Attempts) started() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.used) > 0
}

// has reports whether the call has been sent to addr.
func (a *Attempts) has(addr string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Contains(a.used, addr)
}

// Used returns the addresses the call has been sent to, in order.
func (a *Attempts) Used() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.used...)
}

type attemptsKey struct{}

// WithAttempts returns a context whose calls, under lb_hedge, each go to
// an instance that no other call with the same Attempts went to.
func WithAttempts(ctx context.Context, a *Attempts) context.Context {
	return context.WithValue(ctx, attemptsKey{}, a)
}

func attemptsFrom(ctx context.Context) *Attempts {
	a, _ := ctx.Value(attemptsKey{}).(*Attempts)
	return a
}

// Config is the policy's configuration: the child policy.
type Config struct {
	serviceconfig.LoadBalancingConfig `json:"-"`

	Child parent.Child
}

// ParseConfig reads {"childPolicy": [{"<name>": {...}}, ...]}: the first
// child policy registered in this binary is used.
func ParseConfig(js json.RawMessage) (*Config, error) {
	var raw struct {
		ChildPolicy []map[string]json.RawMessage `json:"childPolicy"`
	}
	if err := json.Unmarshal(js, &raw); err != nil {
		return nil, fmt.Errorf("%s: config %s: %w", Name, js, err)
	}
	child, err := parent.ParseChild(Name, raw.ChildPolicy)
	if err != nil {
		return nil, err
	}
	return &Config{Child: child}, nil
}

type builder struct{}

func (builder) Name() string { return Name }

func (builder) ParseConfig(js json.RawMessage) (serviceconfig.LoadBalancingConfig, error) {
	return ParseConfig(js)
}

func (builder) Build(cc balancer.ClientConn, opts balancer.BuildOptions) balancer.Balancer {
	b := &hedgeBalancer{}
	b.Balancer = parent.Balancer{CC: &childCC{ClientConn: cc, b: b}, Opts: opts}
	return b
}

// hedgeBalancer passes everything to its child, learning the address of
// each SubConn the child makes, and wraps the child's pickers.
type hedgeBalancer struct {
	parent.Balancer
	addrs sync.Map // balancer.SubConn -> its instance's address
}

func (b *hedgeBalancer) UpdateClientConnState(s balancer.ClientConnState) error {
	cfg, ok := s.BalancerConfig.(*Config)
	if !ok {
		return fmt.Errorf("%s: no config", Name)
	}
	return b.Update(cfg.Child, s)
}

// childCC is the ClientConn the child sees.
type childCC struct {
	balancer.ClientConn
	b *hedgeBalancer
}

func (c *childCC) NewSubConn(addrs []resolver.Address, opts balancer.NewSubConnOptions) (balancer.SubConn, error) {
	// Forget the SubConn when it shuts down.
	var sc balancer.SubConn
	if inner := opts.StateListener; inner != nil {
		opts.StateListener = func(s balancer.SubConnState) {
			if s.ConnectivityState == connectivity.Shutdown {
				c.b.addrs.Delete(sc)
			}
			inner(s)
		}
	}
	sc, err := c.ClientConn.NewSubConn(addrs, opts)
	if err == nil && len(addrs) > 0 {
		c.b.addrs.Store(sc, parent.BaseAddr(addrs[0].Addr))
	}
	return sc, err
}

func (c *childCC) UpdateState(s balancer.State) {
	if s.Picker != nil {
		s.Picker = newPicker(s.Picker, c.b)
	}
	c.ClientConn.UpdateState(s)
}

// errTried fails an attempt that finds only instances the call has tried.
var errTried = status.Error(codes.Unavailable, Name+": every instance the policy offered has had this call already")

// picker sends a call's first attempt where the child's picker says, and
// each hedge (an attempt of a call that has one already) to an instance
// the call has not tried, without moving the order the child's picks
// take turns in: under round robin, a hedge that took the next place in
// the order would push the next call's first attempt one instance on, so
// the instance after the fast ones (the slow one, whose calls are the
// ones hedged) would get more first attempts than its share.
//
//   - A child that is an endpointsharding picker (grpc-go's round_robin)
//     shows its children: a hedge goes to one of its READY instances the
//     call has not tried, at random.
//   - A parent.AsidePicker (lb_weighted_round_robin) picks the hedge
//     through PickAside.
//   - Any other child (lb_p2c_ewma, lb_least_request, lb_random) picks the
//     hedge through Pick, as it does every call: its choice does not depend
//     on the picks before it in a way a hedge would skew, and it steers the
//     hedge by what it measures.
type picker struct {
	child     balancer.Picker
	aside     func(balancer.PickInfo) (balancer.PickResult, error) // the child's pick for hedges
	endpoints []readyChild                                         // an endpointsharding child's READY endpoints; nil for other children
	b         *hedgeBalancer
}

// readyChild is a READY child of an endpointsharding picker.
type readyChild struct {
	addr   string // without a pool copy's suffix
	picker balancer.Picker
}

func newPicker(child balancer.Picker, b *hedgeBalancer) *picker {
	p := &picker{child: child, aside: child.Pick, b: b}
	if a, ok := child.(parent.AsidePicker); ok {
		p.aside = a.PickAside
	}
	for _, cs := range endpointsharding.ChildStatesFromPicker(child) {
		if cs.State.ConnectivityState == connectivity.Ready && len(cs.Endpoint.Addresses) > 0 {
			p.endpoints = append(p.endpoints, readyChild{addr: parent.BaseAddr(cs.Endpoint.Addresses[0].Addr), picker: cs.State.Picker})
		}
	}
	return p
}

func (p *picker) Pick(info balancer.PickInfo) (balancer.PickResult, error) {
	a := attemptsFrom(info.Ctx)
	if a == nil {
		return p.child.Pick(info)
	}
	pick := p.child.Pick
	if a.started() {
		if p.endpoints != nil {
			return p.pickReady(info, a)
		}
		pick = p.aside
	}
	for range repicks {
		res, err := pick(info)
		if err != nil {
			return res, err
		}
		addr, _ := p.b.addrs.Load(res.SubConn)
		if s, _ := addr.(string); a.claim(s) {
			return res, nil
		}
		if res.Done != nil {
			res.Done(balancer.DoneInfo{Err: parent.ErrNotUsed})
		}
	}
	return balancer.PickResult{}, errTried
}

// pickReady picks, for a hedge, one of the READY children the call has
// not tried, at random.
func (p *picker) pickReady(info balancer.PickInfo, a *Attempts) (balancer.PickResult, error) {
	for range repicks {
		untried := 0
		for _, c := range p.endpoints {
			if !a.has(c.addr) {
				untried++
			}
		}
		if untried == 0 {
			break
		}
		k := fastrand.IntN(untried)
		for _, c := range p.endpoints {
			if a.has(c.addr) {
				continue
			}
			if k > 0 {
				k--
				continue
			}
			if !a.claim(c.addr) {
				break // another attempt of the call took it just now
			}
			return c.picker.Pick(info)
		}
	}
	return balancer.PickResult{}, errTried
}

// Package hedge sends each attempt of a hedged call to an instance no other
// attempt of the call holds: a parent policy over any child policy whose
// picker, for an attempt that carries its Attempts (WithAttempt), picks
// again while the child's pick lands on an instance another attempt of the
// call holds. The generated client's hedging gives each attempt of a
// hedged call its context; other calls pass straight through, for the
// cost of a context lookup.
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
	"maps"
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

// Attempts are the instances one call's attempts have been sent to: each
// attempt holds the address of its last pick. grpc-go may pick again for
// the same attempt (the connection it got was not ready after all, or a
// transparent retry of a stream the server never saw, as when it raced a
// GOAWAY); such a pick is still that attempt's, and may go back to the
// instance it holds.
type Attempts struct {
	mu   sync.Mutex
	held map[int]string // by attempt number; guarded by mu
}

// claim gives attempt n the instance at addr and reports true, or reports
// false when another attempt of the call holds it.
func (a *Attempts) claim(n int, addr string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.heldByOtherLocked(n, addr) {
		return false
	}
	if a.held == nil {
		a.held = map[int]string{}
	}
	a.held[n] = addr
	return true
}

func (a *Attempts) heldByOtherLocked(n int, addr string) bool {
	for m, h := range a.held {
		if m != n && h == addr {
			return true
		}
	}
	return false
}

// othersStarted reports whether an attempt other than n holds an
// instance: whether n is a hedge.
func (a *Attempts) othersStarted(n int) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for m := range a.held {
		if m != n {
			return true
		}
	}
	return false
}

// heldByOther reports whether an attempt other than n holds any of addrs.
func (a *Attempts) heldByOther(n int, addrs []string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, addr := range addrs {
		if a.heldByOtherLocked(n, addr) {
			return true
		}
	}
	return false
}

// Used returns the addresses the call's attempts hold, by attempt number.
func (a *Attempts) Used() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	ns := slices.Sorted(maps.Keys(a.held))
	used := make([]string, len(ns))
	for i, n := range ns {
		used[i] = a.held[n]
	}
	return used
}

type attemptKey struct{}

// attempt is attempt n of the call whose attempts are a.
type attempt struct {
	a *Attempts
	n int
}

// WithAttempt returns the context of attempt n (from 1) of a call: under
// lb_hedge, its picks go to an instance that no other attempt with the
// same Attempts holds, and a hedge (an attempt after another has picked)
// does not move the child policy's order on.
func WithAttempt(ctx context.Context, a *Attempts, n int) context.Context {
	return context.WithValue(ctx, attemptKey{}, attempt{a: a, n: n})
}

func attemptFrom(ctx context.Context) (attempt, bool) {
	at, ok := ctx.Value(attemptKey{}).(attempt)
	return at, ok && at.a != nil
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
// each hedge (an attempt of a call another attempt of which has picked)
// to an instance no other attempt holds, without moving the order the child's picks
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
	addrs  []string // its addresses, without a pool copy's suffix
	picker balancer.Picker
}

func newPicker(child balancer.Picker, b *hedgeBalancer) *picker {
	p := &picker{child: child, aside: child.Pick, b: b}
	if a, ok := child.(parent.AsidePicker); ok {
		p.aside = a.PickAside
	}
	for _, cs := range endpointsharding.ChildStatesFromPicker(child) {
		if cs.State.ConnectivityState != connectivity.Ready || len(cs.Endpoint.Addresses) == 0 {
			continue
		}
		c := readyChild{picker: cs.State.Picker}
		for _, a := range cs.Endpoint.Addresses {
			c.addrs = append(c.addrs, parent.BaseAddr(a.Addr))
		}
		p.endpoints = append(p.endpoints, c)
	}
	return p
}

func (p *picker) Pick(info balancer.PickInfo) (balancer.PickResult, error) {
	at, ok := attemptFrom(info.Ctx)
	if !ok {
		return p.child.Pick(info)
	}
	pick := p.child.Pick
	if at.a.othersStarted(at.n) {
		if p.endpoints != nil {
			return p.pickReady(info, at)
		}
		pick = p.aside
	}
	for range repicks {
		res, err := pick(info)
		if err != nil {
			return res, err
		}
		if p.claim(at, res) {
			return res, nil
		}
	}
	return balancer.PickResult{}, errTried
}

// claim gives attempt at the instance of res, or throws res away (its
// Done told the pick was not used) when another attempt holds it.
func (p *picker) claim(at attempt, res balancer.PickResult) bool {
	addr, _ := p.b.addrs.Load(res.SubConn)
	if s, _ := addr.(string); at.a.claim(at.n, s) {
		return true
	}
	if res.Done != nil {
		res.Done(balancer.DoneInfo{Err: parent.ErrNotUsed})
	}
	return false
}

// pickReady picks, for a hedge, one of the READY children that no other
// attempt of the call holds, at random. An endpoint is held when any of
// its addresses is (its pick_first child may be connected to any).
func (p *picker) pickReady(info balancer.PickInfo, at attempt) (balancer.PickResult, error) {
	for range repicks {
		untried := 0
		for _, c := range p.endpoints {
			if !at.a.heldByOther(at.n, c.addrs) {
				untried++
			}
		}
		if untried == 0 {
			break
		}
		k := fastrand.IntN(untried)
		for _, c := range p.endpoints {
			if at.a.heldByOther(at.n, c.addrs) {
				continue
			}
			if k > 0 {
				k--
				continue
			}
			res, err := c.picker.Pick(info)
			if err != nil {
				return res, err
			}
			if p.claim(at, res) {
				return res, nil
			}
			break // another attempt took it just now: count again
		}
	}
	return balancer.PickResult{}, errTried
}

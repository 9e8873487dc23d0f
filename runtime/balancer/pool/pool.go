// Package pool gives each address of a channel several connections inside
// one gRPC ClientConn: a parent policy that hands its child policy Size
// endpoints per endpoint the resolver gives, told apart by a "#<n>" suffix
// on their addresses, and that dials each of them at the real address. A
// backend behind one address (an L4 load balancer, a per-connection stream
// limit) then gets Size transports, and the child policy, whatever it is
// (round_robin, lb_least_request, lb_p2c_ewma, ring_hash ...), sees every
// call in flight on every transport: one resolver, one balancer, one view.
//
// Importing it registers the "lb_pool" policy:
//
//	grpc.NewClient(target, grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[
//		{"lb_pool":{"size":4,"childPolicy":[{"lb_least_request":{}}]}}]}`), ...)
//
// The policies of this module keep one state per backend address for all
// its copies (lb_least_request counts the calls in flight on all of a
// backend's transports, lb_p2c_ewma measures the backend's latency), and
// choose among the copies as they choose among backends. grpc-go's own
// policies see the copies as endpoints of their own. The suffixed
// addresses appear where a child policy names endpoints (its logs);
// connections, TLS and the peer address of a call are the real address's.
package pool

import (
	"encoding/json"
	"fmt"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/internal/parent"
)

// Name is the name of the balancer.
const Name = "lb_pool"

// MaxSize bounds Size.
const MaxSize = 64

func init() {
	balancer.Register(builder{})
}

// Config is the pool's configuration.
type Config struct {
	serviceconfig.LoadBalancingConfig `json:"-"`

	// Size is the number of connections per address, 1 to MaxSize.
	Size int
	// Child is the policy that balances over the connections.
	Child parent.Child
}

// ParseConfig reads {"size": N, "childPolicy": [{"<name>": {...}}, ...]}:
// the first child policy registered in this binary is used, as in
// grpc-go's loadBalancingConfig lists.
func ParseConfig(js json.RawMessage) (*Config, error) {
	var raw struct {
		Size        int                          `json:"size"`
		ChildPolicy []map[string]json.RawMessage `json:"childPolicy"`
	}
	if err := json.Unmarshal(js, &raw); err != nil {
		return nil, fmt.Errorf("%s: config %s: %w", Name, js, err)
	}
	cfg := &Config{Size: raw.Size}
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

// Validate reports a Size out of 1-MaxSize. (ParseConfig checks the child
// policy as it reads it.) protoc-gen-go-lb calls it on a service's
// (lb.service).pool_size.
func (c Config) Validate() error {
	if c.Size < 1 || c.Size > MaxSize {
		return fmt.Errorf("%s: size %d is not in 1-%d", Name, c.Size, MaxSize)
	}
	return nil
}

type builder struct{}

func (builder) Name() string { return Name }

func (builder) ParseConfig(js json.RawMessage) (serviceconfig.LoadBalancingConfig, error) {
	return ParseConfig(js)
}

func (builder) Build(cc balancer.ClientConn, opts balancer.BuildOptions) balancer.Balancer {
	return &poolBalancer{Balancer: parent.Balancer{CC: dialer{cc}, Opts: opts}}
}

// poolBalancer multiplies the endpoints it is given and passes them to its
// child, through a ClientConn that dials the real addresses. All calls come
// from the channel's serializer, one at a time.
type poolBalancer struct {
	parent.Balancer
}

func (b *poolBalancer) UpdateClientConnState(s balancer.ClientConnState) error {
	cfg, ok := s.BalancerConfig.(*Config)
	if !ok {
		return fmt.Errorf("%s: no config", Name)
	}
	rs := s.ResolverState
	rs.Endpoints = multiply(rs.Endpoints, cfg.Size)
	rs.Addresses = nil // the endpoints say it all (grpc-go's own policies read them)
	return b.Update(cfg.Child, balancer.ClientConnState{ResolverState: rs})
}

// multiply returns size copies of each endpoint: the first keeps its
// addresses, copy n has "#n" after each.
func multiply(eps []resolver.Endpoint, size int) []resolver.Endpoint {
	out := make([]resolver.Endpoint, 0, len(eps)*size)
	for _, e := range eps {
		out = append(out, e)
		for n := 1; n < size; n++ {
			c := e
			c.Addresses = make([]resolver.Address, len(e.Addresses))
			for i, a := range e.Addresses {
				a.Addr = parent.CopyAddr(a.Addr, n)
				c.Addresses[i] = a
			}
			out = append(out, c)
		}
	}
	return out
}

// dialer is the ClientConn the child sees: its subchannels dial the real
// addresses, one transport per copy.
type dialer struct{ balancer.ClientConn }

func (d dialer) NewSubConn(addrs []resolver.Address, opts balancer.NewSubConnOptions) (balancer.SubConn, error) {
	real := make([]resolver.Address, len(addrs))
	for i, a := range addrs {
		a.Addr = parent.BaseAddr(a.Addr)
		real[i] = a
	}
	return d.ClientConn.NewSubConn(real, opts)
}

// UpdateAddresses is deprecated in grpc-go, and no policy here calls it;
// it is kept correct for one that does.
func (d dialer) UpdateAddresses(sc balancer.SubConn, addrs []resolver.Address) {
	real := make([]resolver.Address, len(addrs))
	for i, a := range addrs {
		a.Addr = parent.BaseAddr(a.Addr)
		real[i] = a
	}
	d.ClientConn.UpdateAddresses(sc, real)
}

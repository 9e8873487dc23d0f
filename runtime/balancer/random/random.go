// Package random is a balancer that sends each call to a ready endpoint
// chosen uniformly at random, like go-kit's lb.NewRandom.
//
// Importing it registers the "lb_random" policy (a name of this module's
// own, so that another library registering "random" cannot replace it):
//
//	grpc.NewClient(target,
//		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"lb_random":{}}]}`), ...)
//
// It is built like grpc-go's round_robin: endpointsharding keeps one
// pick_first child per endpoint, and the picker chooses among the READY
// children.
package random

import (
	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/serviceconfig"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/internal/fastrand"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/internal/ready"
)

// Name is the name of the random balancer.
const Name = "lb_random"

func init() {
	balancer.Register(builder{})
}

// Config selects the random policy; it has no parameters.
type Config struct{}

// BalancerName returns Name.
func (Config) BalancerName() string { return Name }

// BalancerConfig returns {}.
func (Config) BalancerConfig() any { return struct{}{} }

type builder struct{}

func (builder) Name() string { return Name }

func (builder) Build(cc balancer.ClientConn, opts balancer.BuildOptions) balancer.Balancer {
	return ready.NewBalancer(cc, opts, func(children []ready.Child[struct{}], _ serviceconfig.LoadBalancingConfig) balancer.Picker {
		p := &picker{children: make([]balancer.Picker, len(children))}
		for i, c := range children {
			p.children[i] = c.Picker
		}
		return p
	})
}

// picker is a pointer, as grpc-go's round_robin's: a slice type's Pick,
// called through the interface, goes through a wrapper that copies it.
type picker struct {
	children []balancer.Picker
}

func (p *picker) Pick(info balancer.PickInfo) (balancer.PickResult, error) {
	return p.children[fastrand.IntN(len(p.children))].Pick(info)
}

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
	"math/rand/v2"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/serviceconfig"

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
		p := make(picker, len(children))
		for i, c := range children {
			p[i] = c.Picker
		}
		return p
	})
}

type picker []balancer.Picker

func (p picker) Pick(info balancer.PickInfo) (balancer.PickResult, error) {
	// A multiply-shift of 32 random bits: as uniform as rand.IntN for any
	// number of endpoints this policy sees, at half its cost.
	return p[int(uint64(rand.Uint32())*uint64(len(p))>>32)].Pick(info)
}

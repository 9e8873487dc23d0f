// Package random is a balancer that sends each call to a ready endpoint
// chosen uniformly at random, like go-kit's lb.NewRandom.
//
// Importing it registers the "random" policy:
//
//	grpc.NewClient(target,
//		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"random":{}}]}`), ...)
//
// It is built like grpc-go's round_robin: endpointsharding keeps one
// pick_first child per endpoint, and the picker chooses among the READY
// children.
package random

import (
	"math/rand/v2"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/endpointsharding"
	"google.golang.org/grpc/balancer/pickfirst"
	"google.golang.org/grpc/connectivity"
)

// Name is the name of the random balancer.
const Name = "random"

func init() {
	balancer.Register(builder{})
}

type builder struct{}

func (builder) Name() string { return Name }

func (builder) Build(cc balancer.ClientConn, opts balancer.BuildOptions) balancer.Balancer {
	b := &randomBalancer{ClientConn: cc}
	b.child = endpointsharding.NewBalancer(b, opts, balancer.Get(pickfirst.Name).Build, endpointsharding.Options{})
	return b
}

// randomBalancer sits between endpointsharding and the channel: it passes
// resolver updates down and replaces the pickers coming up.
type randomBalancer struct {
	balancer.ClientConn // the channel; UpdateState is overridden
	child               balancer.Balancer
}

func (b *randomBalancer) UpdateClientConnState(s balancer.ClientConnState) error {
	return b.child.UpdateClientConnState(balancer.ClientConnState{
		// Let the pick_first children honour client-side health checks.
		ResolverState: pickfirst.EnableHealthListener(s.ResolverState),
	})
}

func (b *randomBalancer) ResolverError(err error) { b.child.ResolverError(err) }

func (b *randomBalancer) UpdateSubConnState(sc balancer.SubConn, s balancer.SubConnState) {
	b.child.UpdateSubConnState(sc, s)
}

func (b *randomBalancer) ExitIdle() { b.child.ExitIdle() }

func (b *randomBalancer) Close() { b.child.Close() }

// UpdateState receives endpointsharding's aggregate state and publishes a
// random picker over the READY children. With none ready it passes the
// aggregate on unchanged, so callers see CONNECTING or the failure.
func (b *randomBalancer) UpdateState(s balancer.State) {
	var ready []balancer.Picker
	for _, c := range endpointsharding.ChildStatesFromPicker(s.Picker) {
		if c.State.ConnectivityState == connectivity.Ready {
			ready = append(ready, c.State.Picker)
		}
	}
	if len(ready) == 0 {
		b.ClientConn.UpdateState(s)
		return
	}
	b.ClientConn.UpdateState(balancer.State{ConnectivityState: connectivity.Ready, Picker: picker(ready)})
}

type picker []balancer.Picker

func (p picker) Pick(info balancer.PickInfo) (balancer.PickResult, error) {
	return p[rand.IntN(len(p))].Pick(info)
}

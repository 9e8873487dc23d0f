// Package roundrobin is the configuration of grpc-go's round_robin policy:
// calls rotate over the ready instances.
package roundrobin

import "google.golang.org/grpc/balancer/roundrobin"

// Name is grpc-go's name of the policy.
const Name = roundrobin.Name

// Config selects round_robin; it has no parameters.
type Config struct{}

// BalancerName returns Name.
func (Config) BalancerName() string { return Name }

// BalancerConfig returns {}.
func (Config) BalancerConfig() any { return struct{}{} }

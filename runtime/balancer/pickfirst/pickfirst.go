// Package pickfirst is the configuration of grpc-go's pick_first policy as
// the generated code selects it: every call goes to the first instance that
// connects, and each client shuffles the instances first (gRFC A62), so that
// a fleet of clients spreads over them.
package pickfirst

import "google.golang.org/grpc/balancer/pickfirst"

// Name is grpc-go's name of the policy.
const Name = pickfirst.Name

// Config selects pick_first with a shuffled address list.
type Config struct{}

// BalancerName returns Name.
func (Config) BalancerName() string { return Name }

// BalancerConfig returns {"shuffleAddressList": true}.
func (Config) BalancerConfig() any { return map[string]any{"shuffleAddressList": true} }

// Package slowstart ramps the share of calls an instance new to the
// fleet takes (the "lb_slow_start" policy): a parent over another policy.
package slowstart

// Name is the name of the balancer.
const Name = "lb_slow_start"

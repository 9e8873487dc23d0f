// Package outlier takes instances that fail calls out of what a policy may
// pick, for a while (the "lb_outlier" policy): a parent over any policy.
package outlier

// Name is the name of the balancer.
const Name = "lb_outlier"

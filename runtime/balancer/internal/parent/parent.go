// Package parent is what this module's parent policies (lb_pool, lb_hedge)
// share: a child policy named in their config as in grpc-go's
// loadBalancingConfig lists, built over a ClientConn the parent wraps, and
// every balancer call passed down to it.
package parent

import (
	"encoding/json"
	"fmt"
	"strings"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/serviceconfig"
)

// Child is a child policy: its name and its parsed config (nil when it
// has none).
type Child struct {
	Name   string
	Config serviceconfig.LoadBalancingConfig
}

// ParseChild reads a childPolicy list, [{"<name>": {...}}, ...]: the first
// policy registered in this binary is used, its config parsed by its
// builder. policy names the parent in errors.
func ParseChild(policy string, list []map[string]json.RawMessage) (Child, error) {
	var missing []string
	for _, entry := range list {
		if len(entry) != 1 {
			return Child{}, fmt.Errorf("%s: childPolicy entry %v must name one policy", policy, entry)
		}
		for name, js := range entry {
			b := balancer.Get(name)
			if b == nil {
				missing = append(missing, name)
				continue
			}
			c := Child{Name: name}
			if p, ok := b.(balancer.ConfigParser); ok {
				if len(js) == 0 || string(js) == "null" {
					js = json.RawMessage("{}")
				}
				cfg, err := p.ParseConfig(js)
				if err != nil {
					return Child{}, fmt.Errorf("%s: childPolicy %s: %w", policy, name, err)
				}
				c.Config = cfg
			}
			return c, nil
		}
	}
	return Child{}, fmt.Errorf("%s: no registered policy in childPolicy (%s)", policy, strings.Join(missing, ", "))
}

// Balancer holds a parent's child: built over CC, rebuilt when the
// config names another policy. Its methods other than Update pass the call
// down; a parent embeds it and writes UpdateClientConnState.
type Balancer struct {
	// CC is the ClientConn the child is built over: the parent's wrapper
	// of the channel.
	CC   balancer.ClientConn
	Opts balancer.BuildOptions

	child balancer.Balancer
	name  string
}

// Update hands the child s, with c's config, building the child first if
// needed.
func (b *Balancer) Update(c Child, s balancer.ClientConnState) error {
	if b.child == nil || b.name != c.Name {
		if b.child != nil {
			b.child.Close()
		}
		b.child = balancer.Get(c.Name).Build(b.CC, b.Opts)
		b.name = c.Name
	}
	return b.child.UpdateClientConnState(balancer.ClientConnState{ResolverState: s.ResolverState, BalancerConfig: c.Config})
}

// ResolverError passes err to the child.
func (b *Balancer) ResolverError(err error) {
	if b.child != nil {
		b.child.ResolverError(err)
	}
}

// UpdateSubConnState passes the state to the child.
func (b *Balancer) UpdateSubConnState(sc balancer.SubConn, s balancer.SubConnState) {
	if b.child != nil {
		b.child.UpdateSubConnState(sc, s)
	}
}

// ExitIdle passes the call to the child.
func (b *Balancer) ExitIdle() {
	if b.child != nil {
		b.child.ExitIdle()
	}
}

// Close closes the child.
func (b *Balancer) Close() {
	if b.child != nil {
		b.child.Close()
	}
}

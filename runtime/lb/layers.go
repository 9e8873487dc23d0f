package lb

import (
	"fmt"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/consistenthash"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/hedge"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/locality"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/outlier"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/pickfirst"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/pool"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/ringhash"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/slowstart"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/subset"
)

// A service's policy sits in a tree of parent policies, each a package
// under runtime/balancer whose config names its child. This is the one
// place that says which holds which. From the channel down:
//
//	lb_hedge    sends each attempt of a hedged call to an instance the
//	            call has not tried: the attempts are the call's, so it
//	            sits above every choice of instance and sees all of them.
//	lb_subset   which instances this client connects to at all, a
//	            per-client choice made before anything is measured (per
//	            locality level under ZoneAware).
//	lb_outlier  which instances are out for now, from the outcomes of
//	            the calls (each pick's Done): each attempt of a hedged call
//	            counts for the instance it went to. It tells the policy
//	            through the health of its subchannels, which every policy
//	            reads.
//	lb_slow_start
//	            thins the picks of an instance new to the fleet, so that
//	            its share ramps up; under the ejection, which sees every
//	            call that goes out.
//	lb_locality which level (the client's zone, its region, the rest)
//	            a call goes to, by the levels' health, then one child
//	            policy per level picks in it. Under lb_outlier, so that
//	            an ejected instance counts as unhealthy in its level.
//	lb_pool     several connections to each address: it hands the policy
//	            each instance's copies as endpoints, and the policy keeps
//	            one state per address for all of them.
//	the policy  round_robin, lb_p2c_ewma, ...: picks among what is left.
//
// (../shared/notes/architecture.md says why; it puts the locality above
// the ejection, but a parent learns of an ejection only through the
// health of subchannels the ejecting parent wraps, so lb_locality sits
// under lb_outlier to count an ejected instance as unhealthy.) layers lists the parents in
// that order, the outermost first; one a service does not declare is left
// out and costs nothing.
var layers = []layer{
	{name: hedge.Name, wraps: hedges},
	{name: subset.Name, wraps: subsets, config: func(svc *Service, env clientEnv) map[string]any {
		c := *svc.Subset
		if env.count > 0 && c.Count == 0 {
			c.Index, c.Count = env.index, env.count
		}
		if z := svc.ZoneAware; z != nil && c.Zone == "" {
			// Subsets per level, so the client's zone keeps its own.
			c.Zone, c.Region = z.Zone, z.Region
			if c.Zone == "" && c.Region == "" {
				c.Zone, c.Region = env.Zone, env.Region
			}
		}
		return c.BalancerConfig().(map[string]any)
	}},
	{name: outlier.Name, wraps: ejects, config: func(svc *Service, _ clientEnv) map[string]any {
		return svc.OutlierEjection.BalancerConfig().(map[string]any)
	}},
	{name: slowstart.Name, wraps: rampsUp, config: func(svc *Service, _ clientEnv) map[string]any {
		return svc.SlowStart.BalancerConfig().(map[string]any)
	}},
	{name: locality.Name, wraps: zoneAware, config: func(svc *Service, env clientEnv) map[string]any {
		c := *svc.ZoneAware
		if c.Zone == "" && c.Region == "" {
			c.Zone, c.Region = env.Zone, env.Region
		}
		return c.BalancerConfig().(map[string]any)
	}},
	{name: pool.Name, wraps: pooled, config: func(svc *Service, _ clientEnv) map[string]any {
		return map[string]any{"size": svc.PoolSize}
	}},
}

// layer is a parent policy around the service's policy.
type layer struct {
	name string
	// wraps reports whether svc has the layer, or why it cannot.
	wraps func(svc *Service, policy string) (bool, error)
	// config is the layer's config for the client env describes, without
	// its childPolicy; nil for none.
	config func(svc *Service, env clientEnv) map[string]any
}

// wrapPolicy returns the loadBalancingConfig entry of svc: its policy
// (named policy, its entry given) inside the layers svc declares.
func wrapPolicy(svc *Service, policy string, entry map[string]any, env clientEnv) (map[string]any, error) {
	for i := len(layers) - 1; i >= 0; i-- {
		l := layers[i]
		ok, err := l.wraps(svc, policy)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		if err := checkRegistered(l.name); err != nil {
			return nil, err
		}
		cfg := map[string]any{}
		if l.config != nil {
			cfg = l.config(svc, env)
		}
		cfg["childPolicy"] = []map[string]any{entry}
		entry = map[string]any{l.name: cfg}
	}
	return entry, nil
}

// hedges: a method hedges.
func hedges(svc *Service, _ string) (bool, error) {
	for _, m := range svc.Methods {
		if m.Hedging != nil {
			return true, nil
		}
	}
	return false, nil
}

// subsets: the service bounds the instances each client connects to.
func subsets(svc *Service, _ string) (bool, error) {
	if svc.Subset == nil {
		return false, nil
	}
	return true, svc.Subset.Validate()
}

// ejects: the service declares outlier ejection.
func ejects(svc *Service, _ string) (bool, error) {
	if svc.OutlierEjection == nil {
		return false, nil
	}
	return true, svc.OutlierEjection.Validate()
}

// rampsUp: the service declares slow start, under a policy that spreads
// calls by something a ramp may thin.
func rampsUp(svc *Service, policy string) (bool, error) {
	if svc.SlowStart == nil {
		return false, nil
	}
	switch policy {
	case pickfirst.Name:
		return false, fmt.Errorf("slow start under pick_first: every call goes to one instance, there is no share to ramp")
	case consistenthash.Name, ringhash.Name:
		return false, fmt.Errorf("slow start under %s: a ramp would move keys between instances", policy)
	}
	return true, svc.SlowStart.Validate()
}

// zoneAware: the service declares zone-aware routing, under a policy that
// spreads calls over the instances it is given.
func zoneAware(svc *Service, policy string) (bool, error) {
	if svc.ZoneAware == nil {
		return false, nil
	}
	switch policy {
	case pickfirst.Name:
		return false, fmt.Errorf("zone-aware routing under pick_first: every call goes to one instance; pick_first's own order decides which")
	case consistenthash.Name, ringhash.Name:
		return false, fmt.Errorf("zone-aware routing under %s: a key must go to its instance wherever it is; levels would move keys", policy)
	}
	return true, svc.ZoneAware.Validate()
}

// pooled: a pool of more than one connection, under a policy that
// spreads calls.
func pooled(svc *Service, policy string) (bool, error) {
	switch {
	case svc.PoolSize <= 1:
		return false, nil
	case policy == pickfirst.Name:
		return false, fmt.Errorf("a pool (size %d) under pick_first: pick_first calls one transport; choose a policy that spreads calls", svc.PoolSize)
	}
	return true, pool.Config{Size: svc.PoolSize}.Validate()
}

package main

import (
	"testing"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/consistenthash"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/leastrequest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/ringhash"
)

// TestLimitsMatchThePolicies: the plugin checks a policy's options against
// its own copy of the policy package's limits (so that a bad value fails
// buf generate, naming the proto file and option; the plugin does not link
// the runtime). The copies must stay the packages' values.
func TestLimitsMatchThePolicies(t *testing.T) {
	for _, c := range []struct {
		name         string
		plugin, pkgs int64
	}{
		{"consistenthash.MaxTableSize", maxTableSize, consistenthash.MaxTableSize},
		{"leastrequest.MinChoiceCount", minChoiceCount, leastrequest.MinChoiceCount},
		{"leastrequest.MaxChoiceCount", maxChoiceCount, leastrequest.MaxChoiceCount},
		{"ringhash.MaxRingSize", maxRingSize, ringhash.MaxRingSize},
		{"ringhash.DefaultMinRingSize", defaultMinRing, ringhash.DefaultMinRingSize},
		{"ringhash.DefaultMaxRingSize", defaultMaxRing, ringhash.DefaultMaxRingSize},
	} {
		if c.plugin != c.pkgs {
			t.Errorf("the plugin's %s is %d, the package's %d", c.name, c.plugin, c.pkgs)
		}
	}
}

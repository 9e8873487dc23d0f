package locality

import (
	"encoding/json"
	"fmt"
	"math"

	"google.golang.org/grpc/serviceconfig"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/internal/parent"
)

// The defaults, and the reasons for them.
const (
	// DefaultOverprovisioning is Envoy's: a level with h of its instances
	// healthy takes min(1, 1.4·h) of the calls left to it, so it keeps
	// all of them until more than 2/7 (28.6%) of it is down, then sheds
	// to the next level in proportion.
	DefaultOverprovisioning = 1.4
	// DefaultPanicThreshold is Envoy's: with less than 50% of all the
	// instances healthy, locality is ignored and calls spread over every
	// healthy instance, so that a fleet short of capacity uses all of it.
	DefaultPanicThreshold = 50
)

// Config is the zone-aware routing of a service.
type Config struct {
	serviceconfig.LoadBalancingConfig `json:"-"`

	// Zone and Region are the client's own (lb.WithLocality or LB_ZONE
	// and LB_REGION); a client without a zone ranks every instance
	// alike.
	Zone, Region string
	// Overprovisioning is the factor of Envoy's priority load, at least
	// 1; 0 means DefaultOverprovisioning.
	Overprovisioning float64
	// PanicThreshold is the share of healthy instances, in percent (0 to
	// 100), below which locality is ignored; 0 means
	// DefaultPanicThreshold. Set it to -1 to never panic.
	PanicThreshold float64

	// Child is the policy each level's instances are balanced with;
	// ParseConfig reads it, BalancerConfig leaves it out.
	Child parent.Child `json:"-"`
}

// BalancerName returns Name.
func (Config) BalancerName() string { return Name }

// BalancerConfig returns the JSON form of c without its child policy
// (the parent adds "childPolicy"): the settings that are set.
func (c Config) BalancerConfig() any {
	m := map[string]any{}
	if c.Zone != "" {
		m["zone"] = c.Zone
	}
	if c.Region != "" {
		m["region"] = c.Region
	}
	if c.Overprovisioning != 0 {
		m["overprovisioning"] = c.Overprovisioning
	}
	if c.PanicThreshold != 0 {
		m["panicThreshold"] = c.PanicThreshold
	}
	return m
}

// ParseConfig reads {"zone": "a", "region": "r", "overprovisioning": 1.4,
// "panicThreshold": 50, "childPolicy": [{"round_robin": {}}]}, every field
// but childPolicy optional. The defaults are applied.
func ParseConfig(js json.RawMessage) (*Config, error) {
	var raw struct {
		Zone             string                       `json:"zone"`
		Region           string                       `json:"region"`
		Overprovisioning float64                      `json:"overprovisioning"`
		PanicThreshold   float64                      `json:"panicThreshold"`
		ChildPolicy      []map[string]json.RawMessage `json:"childPolicy"`
	}
	if err := json.Unmarshal(js, &raw); err != nil {
		return nil, fmt.Errorf("%s: config %s: %w", Name, js, err)
	}
	cfg := &Config{Zone: raw.Zone, Region: raw.Region, Overprovisioning: raw.Overprovisioning, PanicThreshold: raw.PanicThreshold}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Overprovisioning == 0 {
		cfg.Overprovisioning = DefaultOverprovisioning
	}
	if cfg.PanicThreshold == 0 {
		cfg.PanicThreshold = DefaultPanicThreshold
	}
	child, err := parent.ParseChild(Name, raw.ChildPolicy)
	if err != nil {
		return nil, err
	}
	cfg.Child = child
	return cfg, nil
}

// Validate reports a setting out of range; zeros are the defaults.
// protoc-gen-go-lb calls it on the Config it generates.
func (c Config) Validate() error {
	switch {
	case math.IsNaN(c.Overprovisioning) || math.IsInf(c.Overprovisioning, 0) || c.Overprovisioning != 0 && c.Overprovisioning < 1:
		return fmt.Errorf("%s: overprovisioning %v must be at least 1", Name, c.Overprovisioning)
	case math.IsNaN(c.PanicThreshold) || c.PanicThreshold < -1 || c.PanicThreshold > 100 || c.PanicThreshold < 0 && c.PanicThreshold != -1:
		return fmt.Errorf("%s: panic threshold %v is not a percentage (0-100, or -1 for never)", Name, c.PanicThreshold)
	}
	return nil
}

package slowstart

import (
	"encoding/json"
	"fmt"
	"math"
	"time"

	"google.golang.org/grpc/serviceconfig"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/internal/parent"
)

// The defaults: Envoy's slow_start_config.
const (
	// DefaultAggression makes the ramp linear.
	DefaultAggression = 1.0
	// DefaultMinWeightPercent is the floor of the ramp: a new instance
	// takes at least this share of a warm one's calls from the start.
	DefaultMinWeightPercent = 10
)

// Config is the slow start of a service: an instance new to the fleet
// takes weight × max(MinWeightPercent/100, (t/Window)^(1/Aggression)) of
// a warm instance's calls, t its age, until t reaches Window.
type Config struct {
	serviceconfig.LoadBalancingConfig `json:"-"`

	// Window is how long the ramp lasts; required, positive.
	Window time.Duration
	// Aggression shapes the ramp: 1 is linear, above 1 gives a new
	// instance more early on, below 1 less. 0 means DefaultAggression.
	Aggression float64
	// MinWeightPercent is the floor, in percent of a warm instance's
	// weight, 1-100; 0 means DefaultMinWeightPercent.
	MinWeightPercent float64

	// Child is the policy the ramp thins; ParseConfig reads it,
	// BalancerConfig leaves it out.
	Child parent.Child `json:"-"`
}

// BalancerName returns Name.
func (Config) BalancerName() string { return Name }

// BalancerConfig returns the JSON form of c without its child policy
// (the parent adds "childPolicy"): the settings that are set.
func (c Config) BalancerConfig() any {
	m := map[string]any{"window": c.Window.String()}
	if c.Aggression != 0 {
		m["aggression"] = c.Aggression
	}
	if c.MinWeightPercent != 0 {
		m["minWeightPercent"] = c.MinWeightPercent
	}
	return m
}

// ParseConfig reads {"window": "30s", "aggression": 1, "minWeightPercent":
// 10, "childPolicy": [{"round_robin": {}}]}; window and childPolicy are
// required. The defaults are applied.
func ParseConfig(js json.RawMessage) (*Config, error) {
	var raw struct {
		Window           string                       `json:"window"`
		Aggression       float64                      `json:"aggression"`
		MinWeightPercent float64                      `json:"minWeightPercent"`
		ChildPolicy      []map[string]json.RawMessage `json:"childPolicy"`
	}
	if err := json.Unmarshal(js, &raw); err != nil {
		return nil, fmt.Errorf("%s: config %s: %w", Name, js, err)
	}
	cfg := &Config{Aggression: raw.Aggression, MinWeightPercent: raw.MinWeightPercent}
	if raw.Window != "" {
		d, err := time.ParseDuration(raw.Window)
		if err != nil {
			return nil, fmt.Errorf("%s: window %q: %w", Name, raw.Window, err)
		}
		cfg.Window = d
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Aggression == 0 {
		cfg.Aggression = DefaultAggression
	}
	if cfg.MinWeightPercent == 0 {
		cfg.MinWeightPercent = DefaultMinWeightPercent
	}
	child, err := parent.ParseChild(Name, raw.ChildPolicy)
	if err != nil {
		return nil, err
	}
	cfg.Child = child
	return cfg, nil
}

// Validate reports a setting out of range; zeros but Window's are the
// defaults. protoc-gen-go-lb calls it on the Config it generates.
func (c Config) Validate() error {
	switch {
	case c.Window <= 0:
		return fmt.Errorf("%s: window %v must be positive", Name, c.Window)
	case c.Aggression < 0 || math.IsNaN(c.Aggression) || math.IsInf(c.Aggression, 0):
		return fmt.Errorf("%s: aggression %v must be positive", Name, c.Aggression)
	case c.MinWeightPercent < 0 || c.MinWeightPercent > 100 || math.IsNaN(c.MinWeightPercent):
		return fmt.Errorf("%s: min weight percent %v is not in 1-100", Name, c.MinWeightPercent)
	}
	return nil
}

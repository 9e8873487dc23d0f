// Package ringhash is the configuration of grpc-go's ring_hash policy
// (gRFC A42, A76) as the generated code selects it: consistent hashing on
// each call's HashKeyHeader, which the generated client sets from the
// method's (lb.method).hash_key.
package ringhash

import (
	"encoding/json"
	"fmt"

	_ "google.golang.org/grpc/balancer/ringhash" // registers ring_hash_experimental
)

// Name is grpc-go's name of the policy.
const Name = "ring_hash_experimental"

// HashKeyHeader is the request header the ring hashes. Calls without it are
// spread at random.
const HashKeyHeader = "lb-hash-key"

// Limits and defaults of the ring sizes (grpc-go's).
const (
	DefaultMinRingSize = 1024
	DefaultMaxRingSize = 4096
	MaxRingSize        = 8 * 1024 * 1024
)

// Config selects ring_hash_experimental on HashKeyHeader.
type Config struct {
	// MinRingSize and MaxRingSize bound the ring; 0 means
	// DefaultMinRingSize and DefaultMaxRingSize.
	MinRingSize uint64 `json:"minRingSize"`
	MaxRingSize uint64 `json:"maxRingSize"`
}

// BalancerName returns Name.
func (Config) BalancerName() string { return Name }

// BalancerConfig returns the ring sizes that are set and the hash header.
func (c Config) BalancerConfig() any {
	m := map[string]any{"requestHashHeader": HashKeyHeader}
	if c.MinRingSize != 0 {
		m["minRingSize"] = c.MinRingSize
	}
	if c.MaxRingSize != 0 {
		m["maxRingSize"] = c.MaxRingSize
	}
	return m
}

// ParseConfig reads {"minRingSize": n, "maxRingSize": m} as grpc-go does:
// defaults first, then the JSON, then checks (each size at most
// MaxRingSize, min at most max). grpc-go's builder parses the channel's
// config itself; this is for checking one ahead.
func ParseConfig(js json.RawMessage) (*Config, error) {
	cfg := &Config{MinRingSize: DefaultMinRingSize, MaxRingSize: DefaultMaxRingSize}
	if len(js) > 0 {
		if err := json.Unmarshal(js, cfg); err != nil {
			return nil, fmt.Errorf("%s: config %s: %w", Name, js, err)
		}
	}
	if err := cfg.check(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Validate reports ring sizes grpc-go refuses; a zero size is its default,
// as BalancerConfig leaves it out. protoc-gen-go-lb calls it on the Config
// it generates.
func (c Config) Validate() error {
	if c.MinRingSize == 0 {
		c.MinRingSize = DefaultMinRingSize
	}
	if c.MaxRingSize == 0 {
		c.MaxRingSize = DefaultMaxRingSize
	}
	return c.check()
}

// check validates c once its defaults are applied: each size 1 to
// MaxRingSize, the minimum at most the maximum.
func (c *Config) check() error {
	switch {
	case c.MinRingSize == 0 || c.MinRingSize > MaxRingSize:
		return fmt.Errorf("%s: minRingSize %d is not in 1-%d", Name, c.MinRingSize, MaxRingSize)
	case c.MaxRingSize == 0 || c.MaxRingSize > MaxRingSize:
		return fmt.Errorf("%s: maxRingSize %d is not in 1-%d", Name, c.MaxRingSize, MaxRingSize)
	case c.MinRingSize > c.MaxRingSize:
		return fmt.Errorf("%s: minRingSize %d is more than maxRingSize %d", Name, c.MinRingSize, c.MaxRingSize)
	}
	return nil
}

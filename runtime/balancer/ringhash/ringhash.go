// Package ringhash is the configuration of grpc-go's ring_hash policy
// (gRFC A42, A76) as the generated code selects it: consistent hashing on
// each call's HashKeyHeader, which the generated client sets from the
// method's (lb.method).hash_key.
package ringhash

import (
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
	MinRingSize, MaxRingSize uint64
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

package outlier

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"
	"unicode"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/serviceconfig"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/internal/parent"
)

// The defaults, and the reasons for them.
const (
	// DefaultConsecutiveFailures: Envoy's and Finagle's 5. One instance
	// failing every call costs at most this many calls (plus those in
	// flight) before it is out; an instance that fails one call in ten
	// at random reaches 5 in a row once in 100,000 calls.
	DefaultConsecutiveFailures = 5
	// DefaultInterval is how often the failure percentage is judged and
	// an ejection count of an instance that stayed in decays by one:
	// Envoy's and A50's 10 s.
	DefaultInterval = 10 * time.Second
	// DefaultBaseEjectionTime is the first ejection's length; the n-th
	// in a row lasts n times as long. Envoy's and A50's 30 s.
	DefaultBaseEjectionTime = 30 * time.Second
	// DefaultMaxEjectionTime caps an ejection: Envoy's and A50's 300 s.
	DefaultMaxEjectionTime = 300 * time.Second
	// DefaultMaxEjectedPercent is the most of the instances out at once
	// (at least one when there are two or more): Envoy's 10%.
	DefaultMaxEjectedPercent = 10
	// DefaultFailurePercentageThreshold: an instance whose calls failed
	// at least this share in an interval is out. 20%: a backend that is
	// healthy fails far less, one that is gray (a dependency down behind
	// it, a bad deploy) far more.
	DefaultFailurePercentageThreshold = 20
	// DefaultMinimumRequests is the fewest calls an instance needs in an
	// interval for its failure percentage to count: a quiet instance is
	// not judged on three calls. With 50, an instance failing 1% of its
	// calls at random reaches 20% (10 of 50) about once in 10^10 tries;
	// one failing 30% is out after 50 calls.
	DefaultMinimumRequests = 50
)

// DefaultFailureCodes are the codes that count as a failure of the
// instance: what a server (or the connection to it) says of itself. The
// caller's own errors (INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS,
// PERMISSION_DENIED, UNAUTHENTICATED, FAILED_PRECONDITION, OUT_OF_RANGE,
// ABORTED, UNIMPLEMENTED, CANCELED) never count by default.
// DEADLINE_EXCEEDED counts: a backend that stalls shows as the callers'
// deadlines running out.
var DefaultFailureCodes = []codes.Code{
	codes.Unavailable,
	codes.DeadlineExceeded,
	codes.Internal,
	codes.Unknown,
	codes.DataLoss,
	codes.ResourceExhausted,
}

// Config is the outlier ejection of a service. The zero Config is valid:
// consecutive failures with every default.
type Config struct {
	serviceconfig.LoadBalancingConfig `json:"-"`

	// ConsecutiveFailures ejects an instance after this many failed calls
	// in a row. 0 means DefaultConsecutiveFailures; -1 turns the mode off
	// (FailurePercentage must be set then).
	ConsecutiveFailures int
	// FailurePercentage ejects by the share of failed calls; nil: its
	// defaults. Each block of MinimumRequests calls of an instance is
	// judged alone as it ends, and all its calls of an interval at the
	// interval's end.
	FailurePercentage *FailurePercentage
	// DisableFailurePercentage turns the failure-percentage mode off.
	DisableFailurePercentage bool
	// Interval is how often FailurePercentage judges and ejection counts
	// decay; 0 means DefaultInterval.
	Interval time.Duration
	// BaseEjectionTime is the first ejection's length; 0 means
	// DefaultBaseEjectionTime.
	BaseEjectionTime time.Duration
	// MaxEjectionTime caps an ejection; 0 means DefaultMaxEjectionTime (or
	// BaseEjectionTime, if longer).
	MaxEjectionTime time.Duration
	// MaxEjectedPercent is the most of the instances out at once, 1-100;
	// 0 means DefaultMaxEjectedPercent.
	MaxEjectedPercent int
	// FailureCodes are the codes that count as failures; nil means
	// DefaultFailureCodes. OK never counts.
	FailureCodes []codes.Code

	// Child is the policy that picks among the instances not ejected;
	// ParseConfig reads it, BalancerConfig leaves it out.
	Child parent.Child `json:"-"`
}

// FailurePercentage is the failure-percentage mode.
type FailurePercentage struct {
	// Threshold is the share of failed calls, 1-100, at which an instance
	// is ejected; 0 means DefaultFailurePercentageThreshold.
	Threshold int
	// MinimumRequests is the fewest calls in an interval for an instance
	// to be judged; 0 means DefaultMinimumRequests.
	MinimumRequests int
}

// BalancerName returns Name.
func (Config) BalancerName() string { return Name }

// BalancerConfig returns the JSON form of c without its child policy
// (the parent adds "childPolicy"): the settings that are set.
func (c Config) BalancerConfig() any {
	m := map[string]any{}
	if c.ConsecutiveFailures != 0 {
		m["consecutiveFailures"] = c.ConsecutiveFailures
	}
	if c.DisableFailurePercentage {
		m["disableFailurePercentage"] = true
	}
	if fp := c.FailurePercentage; fp != nil {
		f := map[string]any{}
		if fp.Threshold != 0 {
			f["threshold"] = fp.Threshold
		}
		if fp.MinimumRequests != 0 {
			f["minimumRequests"] = fp.MinimumRequests
		}
		m["failurePercentage"] = f
	}
	for k, d := range map[string]time.Duration{"interval": c.Interval, "baseEjectionTime": c.BaseEjectionTime, "maxEjectionTime": c.MaxEjectionTime} {
		if d != 0 {
			m[k] = d.String()
		}
	}
	if c.MaxEjectedPercent != 0 {
		m["maxEjectedPercent"] = c.MaxEjectedPercent
	}
	if c.FailureCodes != nil {
		names := make([]string, len(c.FailureCodes))
		for i, code := range c.FailureCodes {
			names[i] = codeName(code)
		}
		m["failureCodes"] = names
	}
	return m
}

// ParseConfig reads the JSON form: {"consecutiveFailures": 5,
// "failurePercentage": {"threshold": 20, "minimumRequests": 20},
// "interval": "10s", "baseEjectionTime": "30s", "maxEjectionTime": "300s",
// "maxEjectedPercent": 10, "failureCodes": ["UNAVAILABLE", ...],
// "childPolicy": [{"round_robin": {}}]}, every field but childPolicy
// optional. The defaults are applied.
func ParseConfig(js json.RawMessage) (*Config, error) {
	var raw struct {
		ConsecutiveFailures int `json:"consecutiveFailures"`
		FailurePercentage   *struct {
			Threshold       int `json:"threshold"`
			MinimumRequests int `json:"minimumRequests"`
		} `json:"failurePercentage"`
		DisableFailurePercentage bool                         `json:"disableFailurePercentage"`
		Interval                 string                       `json:"interval"`
		BaseEjectionTime         string                       `json:"baseEjectionTime"`
		MaxEjectionTime          string                       `json:"maxEjectionTime"`
		MaxEjectedPercent        int                          `json:"maxEjectedPercent"`
		FailureCodes             []codes.Code                 `json:"failureCodes"`
		ChildPolicy              []map[string]json.RawMessage `json:"childPolicy"`
	}
	if err := json.Unmarshal(js, &raw); err != nil {
		return nil, fmt.Errorf("%s: config %s: %w", Name, js, err)
	}
	cfg := &Config{
		DisableFailurePercentage: raw.DisableFailurePercentage,
		ConsecutiveFailures:      raw.ConsecutiveFailures,
		MaxEjectedPercent:        raw.MaxEjectedPercent,
		FailureCodes:             raw.FailureCodes,
	}
	if fp := raw.FailurePercentage; fp != nil {
		cfg.FailurePercentage = &FailurePercentage{Threshold: fp.Threshold, MinimumRequests: fp.MinimumRequests}
	}
	for _, d := range []struct {
		name string
		s    string
		to   *time.Duration
	}{{"interval", raw.Interval, &cfg.Interval}, {"baseEjectionTime", raw.BaseEjectionTime, &cfg.BaseEjectionTime}, {"maxEjectionTime", raw.MaxEjectionTime, &cfg.MaxEjectionTime}} {
		if d.s == "" {
			continue
		}
		v, err := time.ParseDuration(d.s)
		if err != nil {
			return nil, fmt.Errorf("%s: %s %q: %w", Name, d.name, d.s, err)
		}
		*d.to = v
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	*cfg = cfg.withDefaults()
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
	case c.ConsecutiveFailures < -1:
		return fmt.Errorf("%s: consecutive failures %d: want a count, 0 for the default or -1 for off", Name, c.ConsecutiveFailures)
	case c.ConsecutiveFailures == -1 && c.DisableFailurePercentage:
		return fmt.Errorf("%s: the consecutive-failures and failure-percentage modes are both off: nothing would eject", Name)
	case c.DisableFailurePercentage && c.FailurePercentage != nil:
		return fmt.Errorf("%s: failure percentage settings given with the mode disabled", Name)
	case c.Interval < 0:
		return fmt.Errorf("%s: interval %v must be positive", Name, c.Interval)
	case c.BaseEjectionTime < 0:
		return fmt.Errorf("%s: base ejection time %v must be positive", Name, c.BaseEjectionTime)
	case c.MaxEjectionTime < 0:
		return fmt.Errorf("%s: max ejection time %v must be positive", Name, c.MaxEjectionTime)
	case c.MaxEjectedPercent < 0 || c.MaxEjectedPercent > 100:
		return fmt.Errorf("%s: max ejected percent %d is not in 1-100", Name, c.MaxEjectedPercent)
	}
	if fp := c.FailurePercentage; fp != nil {
		if fp.Threshold < 0 || fp.Threshold > 100 {
			return fmt.Errorf("%s: failure percentage threshold %d is not in 1-100", Name, fp.Threshold)
		}
		if fp.MinimumRequests < 0 {
			return fmt.Errorf("%s: failure percentage minimum requests %d must be positive", Name, fp.MinimumRequests)
		}
	}
	for _, code := range c.FailureCodes {
		if code == codes.OK || code > codes.Unauthenticated {
			return fmt.Errorf("%s: failure code %v: want a gRPC error code", Name, code)
		}
	}
	return nil
}

// withDefaults returns c with its zero settings replaced by the defaults.
func (c Config) withDefaults() Config {
	if c.ConsecutiveFailures == 0 {
		c.ConsecutiveFailures = DefaultConsecutiveFailures
	}
	if c.FailurePercentage == nil && !c.DisableFailurePercentage {
		c.FailurePercentage = &FailurePercentage{}
	}
	if fp := c.FailurePercentage; fp != nil {
		f := *fp
		if f.Threshold == 0 {
			f.Threshold = DefaultFailurePercentageThreshold
		}
		if f.MinimumRequests == 0 {
			f.MinimumRequests = DefaultMinimumRequests
		}
		c.FailurePercentage = &f
	}
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.BaseEjectionTime == 0 {
		c.BaseEjectionTime = DefaultBaseEjectionTime
	}
	if c.MaxEjectionTime == 0 {
		c.MaxEjectionTime = DefaultMaxEjectionTime
	}
	c.MaxEjectionTime = max(c.MaxEjectionTime, c.BaseEjectionTime)
	if c.MaxEjectedPercent == 0 {
		c.MaxEjectedPercent = DefaultMaxEjectedPercent
	}
	if c.FailureCodes == nil {
		c.FailureCodes = slices.Clone(DefaultFailureCodes)
	}
	return c
}

// codeName is the name gRPC's service configs use for c: "UNAVAILABLE",
// "DEADLINE_EXCEEDED".
func codeName(c codes.Code) string {
	var b []byte
	for i, r := range c.String() {
		if r >= 'A' && r <= 'Z' && i > 0 {
			b = append(b, '_')
		}
		b = append(b, byte(unicode.ToUpper(r)))
	}
	return string(b)
}

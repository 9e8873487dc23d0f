package discovery

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"google.golang.org/grpc/resolver"
)

// FailureMode is what channels get when the registry cannot be reached or
// has no valid instance.
type FailureMode int

const (
	// KeepLastGood keeps the last good set of instances (for MaxStaleness
	// when set; then calls fail with UNAVAILABLE) and reports the error.
	KeepLastGood FailureMode = iota
	// FailFast makes calls fail with UNAVAILABLE at once.
	FailFast
	// StaticFallback serves the Fallback addresses (after MaxStaleness
	// when set) until the registry has valid instances again.
	StaticFallback
)

func (m FailureMode) String() string {
	switch m {
	case KeepLastGood:
		return "keep"
	case FailFast:
		return "failfast"
	case StaticFallback:
		return "fallback"
	}
	return fmt.Sprintf("FailureMode(%d)", int(m))
}

// FailurePolicy is what channels get when the registry cannot be reached,
// or answers with no valid instance. The zero value keeps the last good
// set for as long as it takes. It is the same for every backend.
type FailurePolicy struct {
	// Mode is the behaviour.
	Mode FailureMode
	// MaxStaleness, with KeepLastGood or StaticFallback, is how long the
	// last good set is kept after the registry stopped giving one; zero
	// means forever with KeepLastGood and not at all with StaticFallback.
	MaxStaleness time.Duration
	// Fallback are the "host:port" addresses of StaticFallback.
	Fallback []string
}

// Validate checks p.
func (p FailurePolicy) Validate() error {
	switch p.Mode {
	case KeepLastGood, StaticFallback:
	case FailFast:
		if p.MaxStaleness != 0 {
			return errors.New("failure policy: max staleness does not apply to fail fast")
		}
	default:
		return fmt.Errorf("failure policy: unknown mode %d", p.Mode)
	}
	if p.MaxStaleness < 0 {
		return fmt.Errorf("failure policy: max staleness %v is negative", p.MaxStaleness)
	}
	if (p.Mode == StaticFallback) != (len(p.Fallback) > 0) {
		return errors.New("failure policy: fallback addresses go with the static fallback mode, and it needs at least one")
	}
	for i, a := range p.Fallback {
		if _, err := ParseAddress(a); err != nil {
			return fmt.Errorf("failure policy: fallback address %d: %w", i+1, err)
		}
	}
	return nil
}

// String is the policy as target parameters, "" for the zero policy; it
// is part of Key.
func (p FailurePolicy) String() string { return p.query().Encode() }

func (p FailurePolicy) query() url.Values {
	q := url.Values{}
	if p.Mode != KeepLastGood {
		q.Set(paramOnFailure, p.Mode.String())
	}
	if p.MaxStaleness != 0 {
		q.Set(paramMaxStale, p.MaxStaleness.String())
	}
	if len(p.Fallback) > 0 {
		q.Set(paramFallback, strings.Join(p.Fallback, ","))
	}
	return q
}

// The target parameters of the failure policy, the same for every scheme.
const (
	paramOnFailure = "onfailure"
	paramMaxStale  = "maxstale"
	paramFallback  = "fallback"
)

// PolicyParams adds p to a target's query q, for Config.Target.
func PolicyParams(q url.Values, p FailurePolicy) {
	for k, v := range p.query() {
		q[k] = v
	}
}

// splitPolicy takes the failure policy parameters out of q. found reports
// whether any was there.
func splitPolicy(q url.Values) (p FailurePolicy, found bool, err error) {
	if vs, ok := q[paramOnFailure]; ok {
		found = true
		switch v := vs[len(vs)-1]; v {
		case "keep":
			p.Mode = KeepLastGood
		case "failfast":
			p.Mode = FailFast
		case "fallback":
			p.Mode = StaticFallback
		default:
			return p, found, fmt.Errorf("%s %q is not keep, failfast or fallback", paramOnFailure, v)
		}
	}
	if vs, ok := q[paramMaxStale]; ok {
		found = true
		d, err := time.ParseDuration(vs[len(vs)-1])
		if err != nil || d <= 0 {
			return p, found, fmt.Errorf("%s %q is not a positive duration", paramMaxStale, vs[len(vs)-1])
		}
		p.MaxStaleness = d
	}
	if vs, ok := q[paramFallback]; ok {
		found = true
		for a := range strings.SplitSeq(vs[len(vs)-1], ",") {
			p.Fallback = append(p.Fallback, strings.TrimSpace(a))
		}
	}
	delete(q, paramOnFailure)
	delete(q, paramMaxStale)
	delete(q, paramFallback)
	if found {
		if err := p.Validate(); err != nil {
			return p, found, err
		}
	}
	return p, found, nil
}

// errStale marks the error of a last good state kept for longer than the
// failure policy's MaxStaleness.
var errStale = errors.New("stale")

// fail applies the failure policy to err: the registry cannot be reached
// or gave no valid instance.
func (w *watch) fail(err error) {
	w.mu.Lock()
	defer w.unlock()
	w.failLocked(err)
}

func (w *watch) failLocked(err error) {
	if w.stopped {
		return
	}
	err = fmt.Errorf("%s: %w", w.key, err)
	now := w.clock.Now()
	first := w.badSince.IsZero()
	if first {
		w.badSince = now
	}
	p := w.spec.Policy
	switch {
	case p.Mode == FailFast:
		w.publishLocked(nil)
	case p.Mode == StaticFallback && (w.good == nil || p.MaxStaleness == 0 || now.Sub(w.badSince) >= p.MaxStaleness):
		w.publishFallbackLocked()
	case p.Mode == KeepLastGood && w.good != nil && p.MaxStaleness > 0 && now.Sub(w.badSince) >= p.MaxStaleness:
		w.publishLocked(nil)
	case first && w.good != nil && p.MaxStaleness > 0:
		w.expiry = w.clock.AfterFunc(p.MaxStaleness, w.expire)
	}
	w.reportLocked(err)
}

// expire ends keeping the last good set when MaxStaleness is over.
func (w *watch) expire() {
	w.mu.Lock()
	defer w.unlock()
	// A timer of an earlier failure may fire late, after a recovery and a
	// new failure: only the staleness of this one counts.
	if w.stopped || w.badSince.IsZero() || w.clock.Now().Sub(w.badSince) < w.spec.Policy.MaxStaleness {
		return
	}
	err := fmt.Errorf("%s: no good answer from the registry for %v (%w)", w.key, w.spec.Policy.MaxStaleness, errStale)
	if w.spec.Policy.Mode == StaticFallback {
		w.publishFallbackLocked()
	} else {
		w.publishLocked(nil)
	}
	w.reportLocked(err)
}

// recoverLocked ends a failure, if there was one: the registry gives a
// good set again.
func (w *watch) recoverLocked() bool {
	if w.badSince.IsZero() {
		return false
	}
	w.badSince = time.Time{}
	if w.expiry != nil {
		w.expiry.Stop()
		w.expiry = nil
	}
	w.view.err = nil
	return true
}

func (w *watch) publishFallbackLocked() {
	eps := make([]resolver.Endpoint, 0, len(w.spec.Policy.Fallback))
	for _, a := range w.spec.Policy.Fallback {
		addr, _ := ParseAddress(a) // checked by Validate
		eps = append(eps, Endpoint(addr, Metadata{}))
	}
	w.publishLocked(eps)
}

package discovery

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Source lists and watches (or polls) the instances of one service in one
// registry. It is all a discovery backend writes: the loop of this package
// does the rest for every backend alike (backoff, error reporting, publish
// on change, the failure policy, endpoint metadata and weights), and the hub
// shares one running Source between every channel of the process that
// resolves the same thing.
type Source interface {
	// Watch sends what the registry holds to u until ctx ends or the watch
	// breaks, and returns why it broke (anything, once ctx has ended). The
	// loop reports the error to the channels, keeps the last good state,
	// and calls Watch again after a jittered backoff. Watch must give every
	// registry request a deadline.
	Watch(ctx context.Context, u Updates) error
}

// Closer is implemented by Sources that hold a registry client; the hub
// calls Close once the watch has stopped for good.
type Closer interface {
	Close()
}

// NoInstancesReporter is implemented by Sources that can say better than
// ErrNoInstances why the registry gave no instance (Consul: "no instance
// passes its health checks", with a hint about ACLs).
type NoInstancesReporter interface {
	NoInstances() error
}

// Updates is where a Source sends what it sees. Changes are applied when
// Flush is called; the loop then publishes the new set if it changed. Work
// is proportional to the change: Put and Delete touch one instance, and
// only Reset rereads the whole set.
type Updates interface {
	// Reset replaces every instance by insts, in the source's order (Consul
	// near, SRV priority); dropped lists the entries found invalid, each
	// with its reason.
	Reset(insts []Instance, dropped []Dropped)
	// Put adds the instance, or replaces the one with the same ID.
	Put(inst Instance)
	// Delete removes the instance with this ID, if any.
	Delete(id string)
	// Drop removes the instance with this ID, if any, because its entry is
	// invalid now.
	Drop(d Dropped)
	// Flush applies what was sent since the last Flush: publishes the set
	// if it changed, or applies the failure policy if it is empty.
	Flush()
	// Fail reports an answer that cannot be used (an empty answer filtered
	// by ACLs) without breaking the watch: the failure policy applies.
	Fail(err error)
	// ResolveNow is signalled when a channel asks for a new resolution;
	// polling sources look again (watching ones need not read it).
	ResolveNow() <-chan struct{}
}

// Dropped is a registry entry that was left out because it is invalid.
type Dropped struct {
	// ID names the entry: an etcd key, a Consul service ID, a DNS name.
	ID string
	// Reason says why, e.g. a wrapped ErrBadAddress.
	Reason error
}

// ErrNoInstances is reported when the registry answers but has no valid
// instance of the service.
var ErrNoInstances = errors.New("no instances")

// NoInstancesError returns an error with msg that is ErrNoInstances (for
// errors.Is), for a backend to say better why there is none.
func NoInstancesError(msg string) error { return noInstances(msg) }

type noInstances string

func (e noInstances) Error() string        { return string(e) }
func (e noInstances) Is(target error) bool { return target == ErrNoInstances }

// Spec is everything the hub needs to run, or join, the watch of one
// service.
type Spec struct {
	// Key identifies what is watched; equal keys share one watch.
	Key Key
	// New makes the Source; it is called once per watch.
	New func() (Source, error)
	// Backoff is the wait between failed watches; zero fields take
	// DefaultBackoff's.
	Backoff Backoff
	// Policy is what channels see when the registry fails or has no valid
	// instance.
	Policy FailurePolicy
}

// Key identifies one watch: two channels that resolve the same service in
// the same registry, with the same filters and failure policy, share it.
type Key struct {
	// Scheme is the backend's resolver scheme.
	Scheme string
	// Registry is the registry's address (etcd endpoints, Consul agent, DNS
	// server) with anything that changes the connection (TLS settings),
	// never a secret.
	Registry string
	// Service is the service's name, key prefix or DNS name.
	Service string
	// Filters is everything else that changes the answer (Consul tags,
	// datacenter, ...).
	Filters string
	// Options tells builders with options of their own (tests' fakes)
	// apart from the default one; empty for the default builder.
	Options string
	// Policy is the failure policy, as FailurePolicy.String.
	Policy string
}

func (k Key) String() string {
	s := k.Scheme + "://" + k.Registry + "/" + strings.TrimPrefix(k.Service, "/")
	if k.Filters != "" {
		s += "?" + k.Filters
	}
	return s
}

// Backoff is the jittered exponential wait between failed watches.
type Backoff struct {
	// Base is the first wait; it doubles up to Max.
	Base, Max time.Duration
}

// DefaultBackoff is the backoff of Specs that set none.
var DefaultBackoff = Backoff{Base: 100 * time.Millisecond, Max: 10 * time.Second}

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

// IDs numbers distinct values of K (TLS settings, credentials), 0 for K's
// zero value, so that a Key can tell watches with other credentials apart
// without showing them. The zero IDs is ready to use.
type IDs[K comparable] struct {
	mu sync.Mutex
	m  map[K]int
}

// Of returns k's number.
func (n *IDs[K]) Of(k K) int {
	var zero K
	if k == zero {
		return 0
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	id, ok := n.m[k]
	if !ok {
		if n.m == nil {
			n.m = map[K]int{}
		}
		id = len(n.m) + 1
		n.m[k] = id
	}
	return id
}

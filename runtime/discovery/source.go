package discovery

import (
	"context"
	"errors"
	"time"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/internal/clock"
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
	// Clock is the time the watch runs on: a source's timers (a refresh,
	// a probe) are made from it, so that a test moves them with the
	// watch's.
	Clock() clock.Clock
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

// Backoff is the jittered exponential wait between failed watches.
type Backoff struct {
	// Base is the first wait; it doubles up to Max.
	Base, Max time.Duration
}

// DefaultBackoff is the backoff of Specs that set none.
var DefaultBackoff = Backoff{Base: 100 * time.Millisecond, Max: 10 * time.Second}

package discovery

import (
	"context"
	"errors"
	"sync"
	"time"

	"google.golang.org/grpc/grpclog"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/internal/clock"
)

// RegistrationCounter is implemented by Registrars that count how many
// times they put the instance in the registry.
type RegistrationCounter interface {
	// Registrations returns how many times the instance became
	// registered: 1 after the first registration, more when the registry
	// lost it (a lease expired, an agent restarted) and it was put back.
	Registrations() uint64
}

// RegistrationStatus tracks whether a Registrar's instance is registered;
// backends embed it. The zero value is "not registered yet".
type RegistrationStatus struct {
	mu            sync.Mutex
	started       bool          // guarded by mu; false until the first SetStatus
	err           error         // guarded by mu; nil while registered
	changed       chan struct{} // guarded by mu; closed and replaced on a change
	registrations uint64        // guarded by mu; changes to registered
}

// Registrations returns how many times the status became registered.
func (s *RegistrationStatus) Registrations() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.registrations
}

// ErrNotRegistered is the status of a Registrar before its first attempt.
var ErrNotRegistered = errors.New("not registered yet")

// Status returns nil while the instance is registered, else why not.
func (s *RegistrationStatus) Status() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		return ErrNotRegistered
	}
	return s.err
}

// StatusChanged returns a channel that is closed when the status next
// changes between registered and not.
func (s *RegistrationStatus) StatusChanged() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.changed == nil {
		s.changed = make(chan struct{})
	}
	return s.changed
}

// SetStatus records err (nil: registered) and reports whether that changed
// the status between registered and not, for the caller to log.
func (s *RegistrationStatus) SetStatus(err error) (changed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	was := s.err == nil && s.started
	s.started, s.err = true, err
	if was == (err == nil) {
		return false
	}
	if err == nil {
		s.registrations++
	}
	if s.changed != nil {
		close(s.changed)
		s.changed = nil
	}
	return true
}

// Registry is what a backend writes of a Registrar: the calls to its
// registry. A Lifecycle runs them; the rest of a Registrar's life (the
// first attempt bounded by Deregister, one keeper goroutine, Deregister
// waiting for it, the status and its log lines) is the Lifecycle's.
type Registry interface {
	// Register makes one attempt to put the instance in the registry,
	// within ctx, and reports it through Lifecycle.Report.
	Register(ctx context.Context) error
	// Keep keeps the instance in the registry until ctx ends (at
	// Deregister), putting it back when the registry loses it, and
	// reports each attempt through Lifecycle.Report. It runs once, after
	// Register's first attempt, whose error first is.
	Keep(ctx context.Context, first error)
	// Deregister takes the instance out of the registry within ctx, once
	// Keep has returned. registered reports whether Register was called:
	// without it there is nothing of the instance there.
	Deregister(ctx context.Context, registered bool) error
}

// Lifecycle is the Register / Deregister life every backend's Registrar
// shares. A backend's Registrar embeds it and calls Init once:
//
//   - Register makes the first attempt, bounded by the caller's context
//     and by Deregister, then keeps the instance registered in one
//     goroutine; a second Register does nothing, one after Deregister
//     returns the backend's ErrDeregistered.
//   - Deregister stops that goroutine and waits for it, then takes the
//     instance out; a second Deregister returns nil.
//   - The status (RegistrationStatus) and its log lines: one Info line
//     when the instance becomes registered or is deregistered, one
//     Warning when it stops being registered; a failure Deregister caused
//     is not one.
type Lifecycle struct {
	RegistrationStatus

	registry Registry
	name     string                // "<package>: " + the instance, in log lines
	pkg      string                // the backend's package, in log lines
	log      grpclog.DepthLoggerV2 // the package's logger; a test's
	errDereg error                 // the backend's ErrDeregistered

	// ctx ends at Deregister, and with it whatever the registry is asked.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // Register's first attempt, then the keeper

	mu           sync.Mutex
	started      bool      // guarded by mu: Register was called
	deregistered bool      // guarded by mu: Deregister was called
	registeredAt time.Time // guarded by mu: RegisteredAt's last answer
	stamped      bool      // guarded by mu: registeredAt is the first registration's
}

// registrarClock is the clock of RegisteredAt; a test's Fake.
var registrarClock clock.Clock = clock.Real

// RegisteredAt is the registration time a backend writes in each attempt's
// metadata (Metadata.RegisteredAt): now, until an attempt succeeds
// (Report(nil)); from then on the time of that attempt, kept for as long
// as the Registrar lives, when the registry loses the instance and it is
// put back (an etcd lease lost and granted again, a Consul agent
// restarted): the instance is as warm as it was, and its clients do not
// ramp it up again. Each attempt asks once, before it writes.
func (l *Lifecycle) RegisteredAt() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.stamped {
		l.registeredAt = registrarClock.Now().UTC().Round(0)
	}
	return l.registeredAt
}

// stamp keeps the registration time of the attempt that just succeeded.
func (l *Lifecycle) stamp() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.stamped && l.registeredAt.IsZero() {
		l.registeredAt = registrarClock.Now().UTC().Round(0)
	}
	l.stamped = true
}

// Init sets l up for r: pkg and name say what the log lines are about
// ("etcd", the key), log is the package's logger, errDeregistered the
// package's ErrDeregistered.
func (l *Lifecycle) Init(r Registry, pkg, name string, log grpclog.DepthLoggerV2, errDeregistered error) {
	l.registry, l.pkg, l.name, l.log, l.errDereg = r, pkg, name, log, errDeregistered
	l.ctx, l.cancel = context.WithCancel(context.Background())
}

// SetLogger replaces the logger, for a test.
func (l *Lifecycle) SetLogger(log grpclog.DepthLoggerV2) { l.log = log }

// Context ends at Deregister.
func (l *Lifecycle) Context() context.Context { return l.ctx }

// Report records the result of an attempt to register (nil: registered)
// and logs a change.
func (l *Lifecycle) Report(err error) {
	if err != nil && !errors.Is(err, l.errDereg) && l.ctx.Err() != nil {
		// A failure that Deregister caused: the status becomes
		// ErrDeregistered instead.
		return
	}
	if err == nil {
		l.stamp()
	}
	if !l.SetStatus(err) {
		return
	}
	switch {
	case err == nil:
		l.log.Infof("%s: registered %s", l.pkg, l.name)
	case errors.Is(err, l.errDereg):
		l.log.Infof("%s: deregistered %s", l.pkg, l.name)
	default:
		l.log.Warningf("%s: %s not registered: %v", l.pkg, l.name, err)
	}
}

// Register puts the instance in the registry and keeps it there. If the
// first attempt fails, it returns the error and keeps trying in the
// background. A second Register does nothing; a Register after Deregister
// returns the backend's ErrDeregistered and starts nothing.
func (l *Lifecycle) Register(ctx context.Context) error {
	l.mu.Lock()
	if l.deregistered {
		l.mu.Unlock()
		return l.errDereg
	}
	if l.started {
		l.mu.Unlock()
		return nil
	}
	l.started = true
	// Under mu, so that Deregister, which sets deregistered under mu
	// before it waits, waits for this too.
	l.wg.Add(1)
	l.mu.Unlock()

	// The first attempt ends with ctx or at Deregister, whichever is
	// first.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(l.ctx, cancel)
	defer stop()
	err := l.registry.Register(ctx)
	go func() {
		defer l.wg.Done()
		l.registry.Keep(l.ctx, err)
	}()
	return err
}

// Deregister stops keeping the instance, waits for what is in flight
// (which ends with Context), and takes the instance out of the registry
// within ctx. It is idempotent: a second call returns nil.
func (l *Lifecycle) Deregister(ctx context.Context) error {
	l.mu.Lock()
	if l.deregistered {
		l.mu.Unlock()
		return nil
	}
	l.deregistered = true
	started := l.started
	l.mu.Unlock()
	l.cancel()
	l.wg.Wait()
	l.Report(l.errDereg)
	return l.registry.Deregister(ctx, started)
}

package discovery

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/grpclog"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/logtest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/internal/clock"
)

func TestRegistrationStatus(t *testing.T) {
	var s RegistrationStatus
	if !errors.Is(s.Status(), ErrNotRegistered) {
		t.Errorf("zero Status() = %v, want ErrNotRegistered", s.Status())
	}
	changed := s.StatusChanged()
	if !s.SetStatus(nil) || s.Status() != nil {
		t.Fatalf("SetStatus(nil) did not register: %v", s.Status())
	}
	select {
	case <-changed:
	default:
		t.Error("StatusChanged not closed by registering")
	}
	if s.SetStatus(nil) {
		t.Error("SetStatus(nil) twice reported a change")
	}
	changed = s.StatusChanged()
	down := errors.New("down")
	if !s.SetStatus(down) || !errors.Is(s.Status(), down) {
		t.Errorf("SetStatus(down) = %v", s.Status())
	}
	select {
	case <-changed:
	default:
		t.Error("StatusChanged not closed by losing the registration")
	}
	if s.SetStatus(errors.New("still down")) {
		t.Error("one error after another reported a change")
	}
}

var errTestDeregistered = errors.New("test: deregistered")

// fakeRegistry is a Registry whose calls the test holds and answers.
type fakeRegistry struct {
	l         Lifecycle
	attempts  chan chan error // each Register call: the test answers on it
	kept      chan struct{}   // closed when Keep returns
	keepErr   error           // what Keep reports once ctx ends
	firsts    []error         // Keep's first, guarded by mu
	deregs    []bool          // Deregister's registered, guarded by mu
	mu        sync.Mutex
	keeperRan chan struct{}
}

func newFakeRegistry(log grpclog.DepthLoggerV2) *fakeRegistry {
	r := &fakeRegistry{attempts: make(chan chan error), kept: make(chan struct{}), keeperRan: make(chan struct{})}
	r.l.Init(r, "test", "i1", log, errTestDeregistered)
	return r
}

func (r *fakeRegistry) Register(ctx context.Context) error {
	answer := make(chan error, 1)
	select {
	case r.attempts <- answer:
	case <-ctx.Done():
		err := ctx.Err()
		r.l.Report(err)
		return err
	}
	select {
	case err := <-answer:
		r.l.Report(err)
		return err
	case <-ctx.Done():
		err := ctx.Err()
		r.l.Report(err)
		return err
	}
}

func (r *fakeRegistry) Keep(ctx context.Context, first error) {
	defer close(r.kept)
	r.mu.Lock()
	r.firsts = append(r.firsts, first)
	r.mu.Unlock()
	close(r.keeperRan)
	<-ctx.Done()
	if r.keepErr != nil {
		r.l.Report(r.keepErr) // a failure Deregister caused: not a warning
	}
}

func (r *fakeRegistry) Deregister(_ context.Context, registered bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.deregs = append(r.deregs, registered)
	return nil
}

// TestLifecycle: one first attempt however often Register is called, the
// keeper started after it with its result, Deregister waiting for the
// keeper and then taking the instance out, once; the status and its log
// lines (a failure Deregister caused is not a warning); Register after
// Deregister refused.
func TestLifecycle(t *testing.T) {
	log := logtest.NewLogger()
	r := newFakeRegistry(log)
	r.keepErr = errors.New("keep-alive ended")
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	done := make(chan error)
	go func() { done <- r.l.Register(ctx) }()
	answer := <-r.attempts
	if err := r.l.Register(ctx); err != nil {
		t.Errorf("second Register() while the first attempt runs = %v, want nil", err)
	}
	answer <- nil
	if err := <-done; err != nil {
		t.Fatalf("Register() = %v", err)
	}
	<-r.keeperRan
	if err := r.l.Status(); err != nil {
		t.Errorf("Status() = %v, want registered", err)
	}
	if err := r.l.Deregister(ctx); err != nil {
		t.Fatalf("Deregister() = %v", err)
	}
	select {
	case <-r.kept:
	default:
		t.Error("Deregister returned before the keeper")
	}
	if err := r.l.Deregister(ctx); err != nil {
		t.Errorf("second Deregister() = %v, want nil", err)
	}
	if err := r.l.Register(ctx); !errors.Is(err, errTestDeregistered) {
		t.Errorf("Register() after Deregister = %v, want ErrDeregistered", err)
	}
	if err := r.l.Status(); !errors.Is(err, errTestDeregistered) {
		t.Errorf("Status() = %v, want ErrDeregistered", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !slices.Equal(r.firsts, []error{nil}) || !slices.Equal(r.deregs, []bool{true}) {
		t.Errorf("Keep ran with %v, Deregister with %v; want once each, with nil and true", r.firsts, r.deregs)
	}
	if want := []string{"test: registered i1", "test: deregistered i1"}; !slices.Equal(log.Infos(), want) || len(log.Warnings()) > 0 {
		t.Errorf("logged infos %q, warnings %q; want %q and none", log.Infos(), log.Warnings(), want)
	}
}

// TestDeregisterEndsTheFirstAttempt: a first attempt that hangs ends when
// Deregister is called; its failure is no warning; and Deregister without
// any Register tells the registry nothing was registered.
func TestDeregisterEndsTheFirstAttempt(t *testing.T) {
	log := logtest.NewLogger()
	r := newFakeRegistry(log)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	done := make(chan error)
	go func() { done <- r.l.Register(ctx) }()
	<-r.attempts // never answered
	derr := make(chan error)
	go func() { derr <- r.l.Deregister(ctx) }()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Register() ended by Deregister = %v, want context.Canceled", err)
		}
	case <-time.After(timeout):
		t.Fatal("Deregister did not end the first attempt")
	}
	if err := <-derr; err != nil {
		t.Fatalf("Deregister() = %v", err)
	}
	if w := log.Warnings(); len(w) > 0 {
		t.Errorf("warnings %q: a failure Deregister caused is none", w)
	}

	never := newFakeRegistry(log)
	if err := never.l.Deregister(ctx); err != nil {
		t.Fatalf("Deregister() without Register = %v", err)
	}
	if !slices.Equal(never.deregs, []bool{false}) {
		t.Errorf("Deregister without Register told the registry %v, want [false]", never.deregs)
	}
}

// TestRegisteredAt: the registration time is the time of each attempt until
// one succeeds, then that attempt's, through losing the registration and
// getting it back.
func TestRegisteredAt(t *testing.T) {
	start := time.Date(2030, 1, 2, 3, 4, 5, 6, time.FixedZone("x", 3600))
	c := clock.NewFake(start)
	old := registrarClock
	registrarClock = c
	t.Cleanup(func() { registrarClock = old })

	var l Lifecycle
	l.Init(nil, "test", "i1", logtest.NewLogger(), errTestDeregistered)
	if got := l.RegisteredAt(); !got.Equal(start) || got.Location() != time.UTC {
		t.Fatalf("RegisteredAt() before any attempt = %v, want %v in UTC", got, start)
	}
	l.Report(errors.New("unreachable"))
	c.Advance(time.Second)
	first := l.RegisteredAt() // the attempt that succeeds
	if want := start.Add(time.Second); !first.Equal(want) {
		t.Fatalf("RegisteredAt() after a failed attempt = %v, want %v", first, want)
	}
	c.Advance(time.Second)
	l.Report(nil)
	for _, step := range []error{errors.New("lease lost"), nil} {
		c.Advance(time.Minute)
		if got := l.RegisteredAt(); !got.Equal(first) {
			t.Fatalf("RegisteredAt() after Report(%v) = %v, want the first registration's %v", step, got, first)
		}
		l.Report(step)
	}
}

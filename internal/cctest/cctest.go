// Package cctest is the channel side of a gRPC resolver, for tests: a
// resolver.ClientConn that records every state and error it is given, so
// that a test can wait for them with a deadline.
//
//	cc := cctest.Build(t, dns.NewBuilder(), "dns:///greeter.example:50051")
//	cc.WaitAddrs(t, "10.0.0.1:50051", "10.0.0.2:50051")
//	cc.WaitErr(t, "no such host")
//
// It imports no package of this module, so that every package's tests,
// the internal tests of runtime/discovery among them, can use it.
package cctest

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/resolver"
)

// Timeout bounds every wait.
const Timeout = 20 * time.Second

// ClientConn records what a resolver reports.
type ClientConn struct {
	resolver.ClientConn // nil: calling anything else panics

	rejectEmpty bool

	mu      sync.Mutex
	states  []resolver.State // guarded by mu
	errs    []error          // guarded by mu
	closed  bool             // guarded by mu
	changed chan struct{}    // guarded by mu; closed and replaced on every report
}

// An Option changes how a ClientConn answers.
type Option func(*ClientConn)

// RejectEmpty makes UpdateState record a state with no endpoint and return
// balancer.ErrBadResolverState for it, as grpc-go's pick_first and
// round_robin do.
func RejectEmpty() Option { return func(cc *ClientConn) { cc.rejectEmpty = true } }

// New returns an empty ClientConn.
func New(opts ...Option) *ClientConn {
	cc := &ClientConn{changed: make(chan struct{})}
	for _, o := range opts {
		o(cc)
	}
	return cc
}

func (cc *ClientConn) report(f func()) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.closed {
		panic("resolver reported after Close returned")
	}
	f()
	close(cc.changed)
	cc.changed = make(chan struct{})
}

// UpdateState records s.
func (cc *ClientConn) UpdateState(s resolver.State) error {
	cc.report(func() { cc.states = append(cc.states, s) })
	if cc.rejectEmpty && len(s.Endpoints) == 0 {
		return balancer.ErrBadResolverState
	}
	return nil
}

// ReportError records err.
func (cc *ClientConn) ReportError(err error) {
	cc.report(func() { cc.errs = append(cc.errs, err) })
}

// Closed marks the resolver closed: any later report panics.
func (cc *ClientConn) Closed() {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cc.closed = true
}

// States returns every state so far.
func (cc *ClientConn) States() []resolver.State {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return slices.Clone(cc.states)
}

// AllAddrs returns the addresses (Addrs) of every state so far, in order.
func (cc *ClientConn) AllAddrs() [][]string {
	var out [][]string
	for _, s := range cc.States() {
		out = append(out, Addrs(s))
	}
	return out
}

// Errors returns every error so far.
func (cc *ClientConn) Errors() []error {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return slices.Clone(cc.errs)
}

// Addrs returns the first address of each endpoint of s.
func Addrs(s resolver.State) []string {
	var out []string
	for _, ep := range s.Endpoints {
		out = append(out, ep.Addresses[0].Addr)
	}
	return out
}

// Wait waits until cond, called with everything reported so far, holds; it
// fails the test after Timeout.
func (cc *ClientConn) Wait(t testing.TB, what string, cond func(states []resolver.State, errs []error) bool) {
	t.Helper()
	timer := time.NewTimer(Timeout)
	defer timer.Stop()
	for {
		cc.mu.Lock()
		ok := cond(cc.states, cc.errs)
		ch := cc.changed
		cc.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-timer.C:
			t.Fatalf("resolver: %s: not within %v (%s, errors %v)", what, Timeout, cc.summary(), cc.Errors())
		}
	}
}

// summary says how many states were reported and what the last one holds,
// for a failure message.
func (cc *ClientConn) summary() string {
	states := cc.States()
	if len(states) == 0 {
		return "no state"
	}
	last := Addrs(states[len(states)-1])
	if len(last) > 10 {
		return fmt.Sprintf("%d states, the last of %d endpoints", len(states), len(last))
	}
	return fmt.Sprintf("%d states, the last %v", len(states), last)
}

// WaitAddrs waits until the last state's endpoints are exactly want, in
// any order (a source without an order of its own keeps its keys' order),
// and returns that state with its endpoints sorted by address.
func (cc *ClientConn) WaitAddrs(t testing.TB, want ...string) resolver.State {
	t.Helper()
	want = slices.Sorted(slices.Values(want))
	s := cc.waitAddrs(t, want, func(s resolver.State) []string { return slices.Sorted(slices.Values(Addrs(s))) })
	s.Endpoints = slices.Clone(s.Endpoints)
	slices.SortFunc(s.Endpoints, func(a, b resolver.Endpoint) int { return strings.Compare(a.Addresses[0].Addr, b.Addresses[0].Addr) })
	return s
}

// WaitAddrsInOrder waits until the last state's endpoints are exactly
// want, in order, and returns that state.
func (cc *ClientConn) WaitAddrsInOrder(t testing.TB, want ...string) resolver.State {
	t.Helper()
	return cc.waitAddrs(t, want, Addrs)
}

func (cc *ClientConn) waitAddrs(t testing.TB, want []string, addrs func(resolver.State) []string) resolver.State {
	t.Helper()
	var last resolver.State
	cc.Wait(t, "state with endpoints ["+strings.Join(want, " ")+"]", func(states []resolver.State, _ []error) bool {
		if len(states) == 0 {
			return false
		}
		last = states[len(states)-1]
		return slices.Equal(addrs(last), want)
	})
	return last
}

// WaitLen waits until the last state has n endpoints.
func (cc *ClientConn) WaitLen(t testing.TB, n int) {
	t.Helper()
	cc.Wait(t, fmt.Sprintf("state with %d endpoints", n), func(states []resolver.State, _ []error) bool {
		return len(states) > 0 && len(states[len(states)-1].Endpoints) == n
	})
}

// WaitErr waits until the last error reported contains want.
func (cc *ClientConn) WaitErr(t testing.TB, want string) {
	t.Helper()
	cc.Wait(t, "an error containing "+want, func(_ []resolver.State, errs []error) bool {
		return len(errs) > 0 && strings.Contains(errs[len(errs)-1].Error(), want)
	})
}

// CheckStatesSince reports an error for each state published from index
// from on whose addresses are not want: a source that must keep its last
// good state through a failure published no other.
func (cc *ClientConn) CheckStatesSince(t testing.TB, from int, want ...string) {
	t.Helper()
	for i, s := range cc.States()[from:] {
		if got := Addrs(s); !slices.Equal(got, want) {
			t.Errorf("state %d: %v, want the last good one %v", from+i, got, want)
		}
	}
}

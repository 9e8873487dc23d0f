// Package resolvertest is the channel side of a gRPC resolver for tests: a
// resolver.ClientConn that records every state and error it is given, so a
// test can wait for them with a deadline.
package resolvertest

import (
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/grpclog"
	"google.golang.org/grpc/resolver"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
)

// Timeout bounds every wait.
const Timeout = 20 * time.Second

// ClientConn records what a resolver reports.
type ClientConn struct {
	resolver.ClientConn // nil: calling anything else panics

	mu      sync.Mutex
	states  []resolver.State // guarded by mu
	errs    []error          // guarded by mu
	closed  bool             // guarded by mu
	changed chan struct{}    // closed and replaced on every report
}

// New returns an empty ClientConn.
func New() *ClientConn { return &ClientConn{changed: make(chan struct{})} }

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
	return append([]resolver.State(nil), cc.states...)
}

// Errors returns every error so far.
func (cc *ClientConn) Errors() []error {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return append([]error(nil), cc.errs...)
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
			t.Fatalf("resolver: %s: not within %v (states %d, errors %v)", what, Timeout, len(cc.States()), cc.Errors())
		}
	}
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
// want, in order.
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

// Addrs returns the first address of each endpoint of s.
func Addrs(s resolver.State) []string {
	var out []string
	for _, ep := range s.Endpoints {
		out = append(out, ep.Addresses[0].Addr)
	}
	return out
}

// Wrap returns a Builder that builds b's resolvers and records, in the
// returned ClientConn, every state and error they give the real channel.
func Wrap(b resolver.Builder) (resolver.Builder, *ClientConn) {
	rec := New()
	return &wrapped{Builder: b, rec: rec}, rec
}

type wrapped struct {
	resolver.Builder
	rec *ClientConn
}

func (w *wrapped) Build(t resolver.Target, cc resolver.ClientConn, o resolver.BuildOptions) (resolver.Resolver, error) {
	return w.Builder.Build(t, tee{ClientConn: cc, rec: w.rec}, o)
}

// tee passes reports to the channel and records them.
type tee struct {
	resolver.ClientConn
	rec *ClientConn
}

func (t tee) UpdateState(s resolver.State) error {
	t.rec.UpdateState(s)
	return t.ClientConn.UpdateState(s)
}

func (t tee) ReportError(err error) {
	t.rec.ReportError(err)
	t.ClientConn.ReportError(err)
}

// WaitLen waits until the last state has n endpoints.
func (cc *ClientConn) WaitLen(t testing.TB, n int) {
	t.Helper()
	cc.Wait(t, fmt.Sprintf("state with %d endpoints", n), func(states []resolver.State, _ []error) bool {
		return len(states) > 0 && len(states[len(states)-1].Endpoints) == n
	})
}

// Build builds a resolver of target with b and a new ClientConn, and
// closes it when t ends (after which any report fails the test).
func Build(t testing.TB, b resolver.Builder, target string) *ClientConn {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	cc := New()
	r, err := b.Build(resolver.Target{URL: *u}, cc, resolver.BuildOptions{})
	if err != nil {
		t.Fatalf("Build(%s) = %v", target, err)
	}
	t.Cleanup(func() {
		r.Close()
		cc.Closed()
	})
	return cc
}

// VerifyTestMain runs the tests of m, stops the shared watches that no
// channel uses any more (they linger after their last channel closed),
// then fails if any goroutine is left (goleak).
func VerifyTestMain(m *testing.M) { goleak.VerifyTestMain(closingM{m: m}) }

// VerifyTestMainScanning is VerifyTestMain for a package whose TestMain
// sends every log line to scan: after the tests it fails the run if a line
// showed a Secret, or if the whole suite (no -run, no -short) logged no
// line at all (a scan of nothing proves nothing).
func VerifyTestMainScanning(m *testing.M, scan *SecretScanner) {
	goleak.VerifyTestMain(closingM{m: m, scan: scan})
}

type closingM struct {
	m    *testing.M
	scan *SecretScanner
}

func (c closingM) Run() int {
	code := c.m.Run()
	discovery.CloseIdleWatches()
	if c.scan != nil {
		lines, hits := c.scan.Result()
		secretsMu.Lock()
		n := len(secrets)
		secretsMu.Unlock()
		switch {
		case len(hits) > 0:
			fmt.Fprintf(os.Stderr, "FAIL: %d of %d log lines show a secret:\n%s\n", len(hits), lines, strings.Join(hits, "\n"))
			return 1
		case lines == 0 && code == 0 && !testing.Short() && flag.Lookup("test.run").Value.String() == "":
			// The whole suite ran and logged nothing: the scan proved nothing.
			fmt.Fprintln(os.Stderr, "FAIL: the secret scan saw no log line")
			return 1
		case testing.Verbose():
			fmt.Printf("secret scan: %d log lines, none shows any of %d secrets\n", lines, n)
		}
	}
	return code
}

var (
	secretsMu sync.Mutex
	secrets   []string // guarded by secretsMu
)

// Secret registers s as a sentinel secret (a password, a token) of the
// package's tests, which no log line may show, and returns it. Declare
// sentinels as package variables, so they are registered before any test
// logs.
func Secret(s string) string {
	secretsMu.Lock()
	defer secretsMu.Unlock()
	secrets = append(secrets, s)
	return s
}

// SecretScanner is a log writer that checks every line written to it for
// every Secret, keeping only the lines that show one.
type SecretScanner struct {
	mu    sync.Mutex
	lines int      // guarded by mu
	hits  []string // guarded by mu
}

func (s *SecretScanner) Write(p []byte) (int, error) {
	secretsMu.Lock()
	list := secrets
	secretsMu.Unlock()
	text := string(p)
	n := strings.Count(strings.TrimSuffix(text, "\n"), "\n") + 1
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines += n
	for _, secret := range list {
		if strings.Contains(text, secret) {
			s.hits = append(s.hits, strings.TrimSuffix(text, "\n"))
			break
		}
	}
	return len(p), nil
}

// Result returns how many lines were scanned and those that showed a
// secret.
func (s *SecretScanner) Result() (lines int, hits []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lines, slices.Clone(s.hits)
}

// WaitWatch waits until the process's watch of scheme and service (the
// discovery.Key's Service) satisfies cond, and returns it; it fails the test
// after Timeout.
func WaitWatch(t testing.TB, scheme, service string, cond func(discovery.WatchInfo) bool) discovery.WatchInfo {
	t.Helper()
	timer := time.NewTimer(Timeout)
	defer timer.Stop()
	for {
		changed := discovery.WatchesChanged()
		for _, w := range discovery.Watches() {
			if w.Key.Scheme == scheme && w.Key.Service == service && cond(w) {
				return w
			}
		}
		select {
		case <-changed:
		case <-timer.C:
			t.Fatalf("watch of %s %s: condition not met within %v (%+v)", scheme, service, Timeout, discovery.Watches())
		}
	}
}

// LogBuffer collects log output, for a grpclog logger set once in a
// package's TestMain.
type LogBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything logged so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Take returns what was logged since the last Take.
func (l *LogBuffer) Take() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.b.String()
	l.b.Reset()
	return s
}

// SizeCC is a ClientConn that keeps only the number of endpoints of the
// last state, for states of thousands of endpoints (benchmarks).
type SizeCC struct {
	resolver.ClientConn // nil: calling anything else panics

	mu      sync.Mutex
	n       int
	changed chan struct{}
}

// NewSizeCC returns a SizeCC that has seen no state.
func NewSizeCC() *SizeCC { return &SizeCC{n: -1, changed: make(chan struct{})} }

// UpdateState records the size of s.
func (c *SizeCC) UpdateState(s resolver.State) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n = len(s.Endpoints)
	close(c.changed)
	c.changed = make(chan struct{})
	return nil
}

// ReportError ignores err.
func (c *SizeCC) ReportError(error) {}

// WaitLen waits until the last state has n endpoints; it fails after a
// minute.
func (c *SizeCC) WaitLen(t testing.TB, n int) {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		c.mu.Lock()
		got, ch := c.n, c.changed
		c.mu.Unlock()
		if got == n {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("state with %d endpoints not within a minute (last %d)", n, got)
		}
	}
}

// RecordingLogger is a grpclog logger that records what is logged with
// Infof and Warningf and discards the rest, for a component that takes a
// logger of its own.
type RecordingLogger struct {
	grpclog.LoggerV2

	mu       sync.Mutex
	infos    []string // guarded by mu
	warnings []string // guarded by mu
}

// NewRecordingLogger returns an empty RecordingLogger.
func NewRecordingLogger() *RecordingLogger {
	return &RecordingLogger{LoggerV2: grpclog.NewLoggerV2(io.Discard, io.Discard, io.Discard)}
}

func (l *RecordingLogger) Infof(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.infos = append(l.infos, fmt.Sprintf(format, args...))
}

func (l *RecordingLogger) Warningf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.warnings = append(l.warnings, fmt.Sprintf(format, args...))
}

func (*RecordingLogger) InfoDepth(int, ...any)    {}
func (*RecordingLogger) WarningDepth(int, ...any) {}
func (*RecordingLogger) ErrorDepth(int, ...any)   {}
func (*RecordingLogger) FatalDepth(int, ...any)   {}

// Infos returns what was logged with Infof.
func (l *RecordingLogger) Infos() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.infos)
}

// Warnings returns what was logged with Warningf.
func (l *RecordingLogger) Warnings() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.warnings)
}

// FuzzTarget fuzzes a scheme's target parser from seeds: a URL that parses
// never panics parse, and a password it carries never shows in parse's
// error.
func FuzzTarget(f *testing.F, seeds []string, parse func(*url.URL) error) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := url.Parse(s)
		if err != nil {
			return
		}
		err = parse(u)
		if err == nil || u.User == nil {
			return
		}
		if pw, ok := u.User.Password(); ok && len(pw) >= 6 && strings.Contains(err.Error(), pw) {
			t.Fatalf("parse(%q): the error %q shows the password", s, err)
		}
	})
}

// Package resolvertest holds the test helpers that need runtime/discovery:
// a TestMain that stops the process's shared watches before goleak looks
// for goroutines left behind, and a wait for a watch to reach a condition.
//
//	func TestMain(m *testing.M) { resolvertest.VerifyTestMain(m) }
//
// The resolver.ClientConn recorder is internal/cctest, the log recorders
// internal/logtest, and the secret scanner internal/secrettest: they import
// no package of this module.
package resolvertest

import (
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/cctest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/secrettest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
)

// Timeout bounds every wait: cctest.Timeout.
const Timeout = cctest.Timeout

// VerifyTestMain runs the tests of m, stops the shared watches that no
// channel uses any more (they linger after their last channel closed),
// then fails if any goroutine is left (goleak).
func VerifyTestMain(m *testing.M) { goleak.VerifyTestMain(closingM{m: m}) }

// VerifyTestMainScanning is VerifyTestMain for a package whose TestMain
// sends every log line to scan: after the tests, and the shared watches'
// last lines, the run fails as scan.Verdict says.
func VerifyTestMainScanning(m *testing.M, scan *secrettest.Scanner) {
	goleak.VerifyTestMain(closingM{m: m, scan: scan})
}

type closingM struct {
	m    *testing.M
	scan *secrettest.Scanner // nil: no scan
}

func (c closingM) Run() int {
	code := c.m.Run()
	discovery.CloseIdleWatches()
	if c.scan != nil {
		code = c.scan.Verdict(code)
	}
	return code
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

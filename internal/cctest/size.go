package cctest

import (
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/resolver"
)

// SizeCC is a ClientConn that keeps only the number of endpoints of the
// last state, for states of thousands of endpoints (benchmarks).
type SizeCC struct {
	resolver.ClientConn // nil: calling anything else panics

	mu      sync.Mutex
	n       int           // guarded by mu; -1 before the first state
	changed chan struct{} // guarded by mu; closed and replaced on every state
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

package discovery

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/internal/clock"
)

// TestLogLimiter: a thousand warnings at one instant log a burst of
// LogBurst lines; a second later one more line is logged, saying how many
// were left out; then the count starts again.
func TestLogLimiter(t *testing.T) {
	testLogs.Take()
	c := clock.NewFake(time.Unix(1_000_000, 0))
	l := newLogLimiter(logger, c)
	for i := range 1000 {
		l.Warningf("bad entry %d", i)
	}
	lines := func(s string) int { return strings.Count(s, "bad entry") }
	if got := testLogs.Take(); lines(got) != LogBurst {
		t.Fatalf("1000 warnings at once logged %d lines, want %d:\n%s", lines(got), LogBurst, got)
	}
	c.Advance(LogInterval)
	l.Warningf("bad entry %d", 1000)
	got := testLogs.Take()
	if want := fmt.Sprintf("bad entry 1000 (and %d more warnings left out", 1000-LogBurst); lines(got) != 1 || !strings.Contains(got, want) {
		t.Fatalf("a second later: %q, want one line with %q", got, want)
	}
	c.Advance(LogInterval)
	l.Warningf("bad entry %d", 1001)
	if got := testLogs.Take(); lines(got) != 1 || strings.Contains(got, "left out") {
		t.Fatalf("after that: %q, want one line that counts nothing left out", got)
	}
}

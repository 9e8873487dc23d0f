package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/resolvertest"
)

func TestMain(m *testing.M) { resolvertest.VerifyTestMain(m) }

// TestDemo runs the demo: 300 calls over three backends; with one of them
// bad, at most the 5 failed calls that eject it and none answered by it;
// all three again once it recovered; then over the two left after one
// shuts down, with no failed call.
func TestDemo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	var out strings.Builder
	if err := run(ctx, &out, ""); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	// Each round: its title, then a line per backend that answered, then
	// "failed".
	rounds := map[string]string{}
	for _, r := range strings.Split(out.String(), "300 calls, ")[1:] {
		title, body, _ := strings.Cut(r, ":\n")
		body, _, _ = strings.Cut(body, "  failed")
		rounds[strings.Fields(title)[0]+" "+strings.Fields(title)[1]] = body
	}
	backends := func(s string) int { return strings.Count(s, "  127.0.0.1:") }
	for _, want := range []struct {
		round    string
		backends int
	}{{"all three", 3}, {"one backend", 2}, {"after stopping", 2}} {
		body, ok := rounds[want.round]
		if !ok {
			t.Fatalf("the demo has no round %q:\n%s", want.round, out.String())
		}
		if got := backends(body); got != want.backends {
			t.Errorf("round %q reached %d backends, want %d:\n%s", want.round, got, want.backends, out.String())
		}
	}
	for title, body := range rounds { // "after 127.0.0.1:NNNN recovered"
		if strings.HasPrefix(title, "after 127.") {
			if got := backends(body); got != 3 {
				t.Errorf("round %q reached %d backends, want 3:\n%s", title, got, out.String())
			}
		}
	}
	if !strings.Contains(out.String(), "took a call again") {
		t.Errorf("the bad backend did not come back:\n%s", out.String())
	}
	// The metrics summary: picks of all three, the two servers left
	// registered, the watch's last state, the shutdown's propagation.
	_, metrics, _ := strings.Cut(out.String(), "metrics (OpenTelemetry):")
	for _, want := range []struct {
		prefix string
		lines  int
	}{
		{"  lb.client.picks{", 3},
		{"  lb.server.registered{", 2},
		{"  lb.discovery.instances ", 1},
		{"  lb.server.shutdown.propagation ", 1},
		{"  lb.outlier.ejections{lb.outlier.mode=consecutive_failures} 1", 1},
	} {
		n := 0
		for _, l := range strings.Split(metrics, "\n") {
			if strings.HasPrefix(l, want.prefix) {
				n++
			}
		}
		if n != want.lines {
			t.Errorf("metrics: %d lines %q, want %d:\n%s", n, want.prefix, want.lines, metrics)
		}
	}
	if !strings.Contains(metrics, "lb.discovery.instances                                     2 ") {
		t.Errorf("metrics: the client's watch does not show 2 instances:\n%s", metrics)
	}
}

package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/resolvertest"
)

func TestMain(m *testing.M) { resolvertest.VerifyTestMain(m) }

// TestDemo runs the demo: 300 calls over three backends, then over the two
// left after one shuts down, with no failed call.
func TestDemo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	var out strings.Builder
	if err := run(ctx, &out, ""); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	rounds := strings.Split(out.String(), "shutting down")
	if len(rounds) != 2 {
		t.Fatalf("demo output has no shutdown:\n%s", out.String())
	}
	backends := func(s string) int { return strings.Count(s, "  127.0.0.1:") }
	if got := backends(rounds[0]); got != 3 {
		t.Errorf("first round reached %d backends, want 3:\n%s", got, out.String())
	}
	if got := backends(rounds[1]); got != 2 {
		t.Errorf("after the shutdown calls reached %d backends, want 2:\n%s", got, out.String())
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
		{"  grpc.client.attempt.started{grpc.method=helloworld.Greeter/SayHello} 600", 1},
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

// Package testbackend runs in-process gRPC backends for balancer tests:
// each serves grpc.health.v1 and answers the "count" check after a delay
// the test sets, counting those calls.
package testbackend

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Backend is one running backend.
type Backend struct {
	Addr  string
	Delay atomic.Int64 // ns added to each counted call
	Calls atomic.Int64 // counted calls answered
	Conns atomic.Int64 // connections accepted
}

// countingListener counts the connections it accepts.
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// Start starts a backend on loopback; it stops when the test ends.
func Start(t testing.TB) *Backend {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &Backend{Addr: lis.Addr().String()}
	s := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if r, ok := req.(*healthpb.HealthCheckRequest); ok && r.GetService() == "count" {
			b.Calls.Add(1)
			if d := b.Delay.Load(); d > 0 {
				time.Sleep(time.Duration(d)) // the backend's own slowness, not a wait in the test
			}
			return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
		}
		return h(ctx, req)
	}))
	healthpb.RegisterHealthServer(s, health.NewServer())
	go s.Serve(countingListener{Listener: lis, n: &b.Conns})
	t.Cleanup(s.Stop)
	return b
}

// Call makes one counted call through conn.
func Call(ctx context.Context, conn grpc.ClientConnInterface) error {
	_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "count"})
	return err
}

// Share makes n calls through conn from callers goroutines at once and
// returns the share of them that of answered; it fails the test if a call
// fails.
func Share(t testing.TB, conn grpc.ClientConnInterface, callers, n int, all []*Backend, of *Backend) float64 {
	t.Helper()
	total := func() (sum int64) {
		for _, b := range all {
			sum += b.Calls.Load()
		}
		return sum
	}
	before, beforeOf := total(), of.Calls.Load()
	errs := make(chan error, callers)
	for range callers {
		go func() {
			var first error
			for range n / callers {
				if err := Call(context.Background(), conn); err != nil && first == nil {
					first = err
				}
			}
			errs <- first
		}()
	}
	for range callers {
		if err := <-errs; err != nil {
			t.Errorf("call: %v", err)
		}
	}
	return float64(of.Calls.Load()-beforeOf) / float64(total()-before)
}

// StartN starts n backends and returns them with their addresses.
func StartN(t testing.TB, n int) ([]*Backend, []string) {
	t.Helper()
	var bs []*Backend
	var addrs []string
	for range n {
		b := Start(t)
		bs, addrs = append(bs, b), append(addrs, b.Addr)
	}
	return bs, addrs
}

// Package testbackend runs in-process gRPC backends for balancer tests:
// each serves grpc.health.v1 and answers the "count" check after a delay
// the test sets, counting those calls, and answers every method of the
// service EchoService, counting the keys it is sent.
package testbackend

import (
	"context"
	"maps"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// EchoService is a service every backend serves (health SERVING) with
// any method: a request whose field 1 is a string or bytes value
// (wrapperspb.StringValue, BytesValue) is counted under that value, and
// answered with an empty message.
const EchoService = "lbtest.Echo"

// BackendKey is the trailer key (and, on an answer, the header key) under
// which EchoService calls name the backend's address.
const BackendKey = "lbtest-backend"

// Backend is one running backend.
type Backend struct {
	Addr  string
	Delay atomic.Int64 // ns added to each counted call
	Calls atomic.Int64 // counted calls answered
	Conns atomic.Int64 // connections accepted
	// Fail makes EchoService calls fail with UNAVAILABLE (after counting
	// their key).
	Fail atomic.Bool
	// FailCode, when not OK, makes FailPercent% of EchoService calls fail
	// with it, spread evenly (a call fails when the share of failures so
	// far is below FailPercent), after counting their key.
	FailCode    atomic.Uint32
	FailPercent atomic.Int64
	// Echoes counts the EchoService calls received, failed ones included.
	Echoes atomic.Int64
	failed atomic.Int64 // calls FailCode failed

	server *grpc.Server
	health *health.Server

	mu   sync.Mutex
	keys map[string]int // EchoService calls by key; guarded by mu
}

// GracefulStop stops the backend once its calls in flight are done.
func (b *Backend) GracefulStop() { b.server.GracefulStop() }

// SetServing sets the health of EchoService, which clients of that service
// check.
func (b *Backend) SetServing(serving bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if serving {
		st = healthpb.HealthCheckResponse_SERVING
	}
	b.health.SetServingStatus(EchoService, st)
}

// Stop stops the backend at once, failing its calls in flight.
func (b *Backend) Stop() { b.server.Stop() }

// Keys returns how many EchoService calls carried each key.
func (b *Backend) Keys() map[string]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return maps.Clone(b.keys)
}

// echo answers any method of EchoService, counting its key.
func (b *Backend) echo(_ any, stream grpc.ServerStream) error {
	var req wrapperspb.BytesValue // the wire format of StringValue too
	if err := stream.RecvMsg(&req); err != nil {
		return err
	}
	// The trailer names the backend, and the header of an answer does too,
	// as a server's own metadata would (a hedged call must hand back the
	// answering attempt's). A failure sends no header: the response stays
	// trailers-only, and grpc-go may still retry it.
	stream.SetTrailer(metadata.Pairs(BackendKey, b.Addr))
	b.mu.Lock()
	b.keys[string(req.GetValue())]++
	b.mu.Unlock()
	n := b.Echoes.Add(1)
	if b.Fail.Load() {
		return status.Error(codes.Unavailable, "testbackend: failing on purpose")
	}
	if code := codes.Code(b.FailCode.Load()); code != codes.OK && b.failed.Load()*100 < n*b.FailPercent.Load() {
		b.failed.Add(1)
		return status.Error(code, "testbackend: failing on purpose")
	}
	if d := b.Delay.Load(); d > 0 {
		select { // the backend's own slowness, not a wait in the test
		case <-time.After(time.Duration(d)):
		case <-stream.Context().Done():
			return stream.Context().Err()
		}
	}
	stream.SetHeader(metadata.Pairs(BackendKey, b.Addr))
	return stream.SendMsg(&emptypb.Empty{})
}

// Echo calls method of EchoService through conn with req.
func Echo(ctx context.Context, conn grpc.ClientConnInterface, method string, req any) error {
	return conn.Invoke(ctx, "/"+EchoService+"/"+method, req, &emptypb.Empty{})
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
func Start(t testing.TB) *Backend { return StartWith(t) }

// StartWith is Start with server options.
func StartWith(t testing.TB, opts ...grpc.ServerOption) *Backend {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &Backend{Addr: lis.Addr().String(), keys: map[string]int{}}
	s := grpc.NewServer(append(opts, grpc.UnknownServiceHandler(b.echo), grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if r, ok := req.(*healthpb.HealthCheckRequest); ok && r.GetService() == "count" {
			b.Calls.Add(1)
			if d := b.Delay.Load(); d > 0 {
				time.Sleep(time.Duration(d)) // the backend's own slowness, not a wait in the test
			}
			return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
		}
		return h(ctx, req)
	}))...)
	b.server = s
	hs := health.NewServer()
	b.health = hs
	hs.SetServingStatus(EchoService, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(s, hs)
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

// HeldInFlight is Share for a backend held that answers each call after
// hold: it returns held's share, its calls, how long they all took, and its
// calls in flight on average, a lower bound (each of its calls took hold
// or more).
func HeldInFlight(t testing.TB, conn grpc.ClientConnInterface, callers, n int, all []*Backend, held *Backend, hold time.Duration) (inFlight, share float64, calls int64, took time.Duration) {
	t.Helper()
	before := held.Calls.Load()
	start := time.Now()
	share = Share(t, conn, callers, n, all, held)
	took = time.Since(start)
	calls = held.Calls.Load() - before
	return float64(calls) * hold.Seconds() / took.Seconds(), share, calls, took
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

// Package rolling restarts a service's backends one at a time under load,
// for the rolling-restart tests of each registry: unary calls at a steady
// rate and server streams held open, through the generated client's
// runtime (lb.Dial), while each backend is shut down with
// Registration.Shutdown and started again on its address.
package rolling

import (
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/load"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/lb"
)

// Backend is one restartable backend of svc.
type Backend struct {
	Addr  string
	svc   *lb.Service
	calls atomic.Int64 // unary calls answered, over its lives

	mu  sync.Mutex
	reg *lb.Registration // the current life's; guarded by mu
}

// desc is the service the backends serve: Unary answers at once; Stream
// sends a message every 50 ms until the client goes away.
func desc(name string) *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: name,
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{MethodName: "Unary", Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var in emptypb.Empty
			if err := dec(&in); err != nil {
				return nil, err
			}
			srv.(*Backend).calls.Add(1)
			return &emptypb.Empty{}, nil
		}}},
		Streams: []grpc.StreamDesc{{StreamName: "Stream", ServerStreams: true, Handler: func(_ any, stream grpc.ServerStream) error {
			var in emptypb.Empty
			if err := stream.RecvMsg(&in); err != nil {
				return err
			}
			t := time.NewTicker(50 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-stream.Context().Done():
					return stream.Context().Err()
				case <-t.C:
					if err := stream.SendMsg(&emptypb.Empty{}); err != nil {
						return err
					}
				}
			}
		}}},
	}
}

// Start starts a backend of svc on a free loopback port.
func Start(t *testing.T, svc *lb.Service) *Backend {
	t.Helper()
	b := &Backend{svc: svc}
	b.start(t, "127.0.0.1:0")
	t.Cleanup(func() { b.registration().Shutdown(context.Background()) })
	return b
}

// Shutdown shuts the backend's current life down.
func (b *Backend) Shutdown(ctx context.Context) error { return b.registration().Shutdown(ctx) }

func (b *Backend) registration() *lb.Registration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.reg
}

// start serves a new life of b on addr, registered in svc's registry once
// it serves.
func (b *Backend) start(t *testing.T, addr string) {
	t.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	b.Addr = lis.Addr().String()
	s := grpc.NewServer(lb.ServerOptions(b.svc)...)
	reg, err := lb.Register(s, b.svc, desc(b.svc.FullName), b, lb.WithAdvertiseAddress(b.Addr))
	if err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	b.reg = reg
	b.mu.Unlock()
	go reg.Serve(lis)
}

// Result is what a rolling restart measured.
type Result struct {
	Calls, Failed int64
	// FirstError is the first failed unary call's error.
	FirstError error
	// Back is, for each backend, how long after it served again it
	// answered its first call.
	Back []time.Duration
	// Shutdowns are the backends' shutdown reports.
	Shutdowns []lb.ShutdownReport
}

// Restart runs unary calls at rate per second and streams server streams
// through c, for at least d, while it shuts each of bs down and starts it
// again, one at a time, each once the registry lists them all again, as an
// orchestrator waits for readiness; the deadline of ctx bounds it.
func Restart(ctx context.Context, t *testing.T, c *lb.Conn, bs []*Backend, rate, streams int, d time.Duration) Result {
	t.Helper()
	var res Result
	lctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	method := "/" + bs[0].svc.FullName + "/"
	// Open loop: a call every 1/rate, whatever the others are doing.
	unary := load.StartRate(rate, 5*time.Second, func(cctx context.Context) error {
		return c.Invoke(cctx, method+"Unary", &emptypb.Empty{}, &emptypb.Empty{})
	})
	defer unary.Stop()
	// Server streams, opened again when their backend goes.
	sd := &grpc.StreamDesc{StreamName: "Stream", ServerStreams: true}
	for range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for lctx.Err() == nil {
				s, err := c.NewStream(lctx, sd, method+"Stream")
				if err != nil {
					continue
				}
				if s.SendMsg(&emptypb.Empty{}) == nil && s.CloseSend() == nil {
					var m emptypb.Empty
					for s.RecvMsg(&m) == nil {
					}
				}
			}
		}()
	}
	end := time.NewTimer(d)
	defer end.Stop()
	// As an orchestrator does, restart only a fleet that is all up: every
	// backend in the registry and taking calls (a registry lists a new
	// instance only once its check passes; restarting another before
	// leaves the clients with fewer than they should have).
	waitCalled := func(b *Backend, since int64) {
		for b.calls.Load() == since {
			select {
			case <-ctx.Done():
				t.Fatalf("%s got no call", b.Addr)
			case <-time.After(time.Millisecond): // polls the backend's call count
			}
		}
	}
	for _, b := range bs {
		if err := b.registration().WaitRegistered(ctx); err != nil {
			t.Fatalf("%s: %v", b.Addr, err)
		}
		waitCalled(b, 0)
	}
	WaitListed(ctx, t, bs[0].svc.Name, len(bs))
	for _, b := range bs {
		reg := b.registration()
		sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		if err := reg.Shutdown(sctx); err != nil {
			t.Errorf("Shutdown of %s: %v", b.Addr, err)
		}
		cancel()
		res.Shutdowns = append(res.Shutdowns, reg.LastShutdown())
		before := b.calls.Load()
		b.start(t, b.Addr)
		serving := time.Now()
		if err := b.registration().WaitRegistered(ctx); err != nil {
			t.Fatalf("%s: %v", b.Addr, err)
		}
		waitCalled(b, before)
		res.Back = append(res.Back, time.Since(serving))
		// In the registry is not yet listed by it: a Consul instance is
		// listed once its check passes. The next restart waits for that.
		WaitListed(ctx, t, b.svc.Name, len(bs))
	}
	select { // the load runs for d at least
	case <-end.C:
	case <-ctx.Done():
	}
	stop()
	wg.Wait()
	res.Calls, res.Failed, res.FirstError = unary.Stop()
	return res
}

// Check logs res and fails t unless no unary call failed and every backend
// took calls within 3 s of serving again.
func Check(t *testing.T, res Result) {
	t.Helper()
	t.Logf("%d unary calls, %d failed (first: %v); back after %v; shutdowns %+v", res.Calls, res.Failed, res.FirstError, res.Back, res.Shutdowns)
	if res.Failed != 0 {
		t.Errorf("%d of %d unary calls failed during the rolling restart; first: %v", res.Failed, res.Calls, res.FirstError)
	}
	for i, d := range res.Back {
		if d > 3*time.Second {
			t.Errorf("backend %d took calls %v after it served again, want at most 3 s", i, d)
		}
	}
}

// WaitListed waits until the client's watch of service (the process-wide
// one every channel of it shares) holds n instances.
func WaitListed(ctx context.Context, t *testing.T, service string, n int) {
	t.Helper()
	for {
		changed := discovery.WatchesChanged()
		for _, w := range discovery.Watches() {
			if strings.HasSuffix(w.Key.Service, service) && w.Instances == n {
				return
			}
		}
		select {
		case <-changed:
		case <-ctx.Done():
			t.Fatalf("the registry does not list the %d instances of %s: %+v", n, service, discovery.Watches())
		}
	}
}

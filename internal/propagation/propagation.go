// Package propagation measures, in benchmarks, how long a removed instance
// keeps getting calls: the time from removing it from the registry to the
// last call that reaches it, under a steady load.
package propagation

import (
	"context"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Timeout bounds every wait.
const Timeout = 20 * time.Second

// Backend is a gRPC server with grpc.health.v1 that records when calls
// reach it.
type Backend struct {
	Addr string
	last atomic.Int64  // UnixNano of the last call's arrival
	hit  chan struct{} // gets a token per call, when there is room
}

// StartBackend starts a Backend on loopback, stopped when tb ends.
func StartBackend(tb testing.TB) *Backend {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	b := &Backend{Addr: lis.Addr().String(), hit: make(chan struct{}, 1)}
	s := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		b.last.Store(time.Now().UnixNano())
		select {
		case b.hit <- struct{}{}:
		default:
		}
		return h(ctx, req)
	}))
	healthpb.RegisterHealthServer(s, health.NewServer())
	go s.Serve(lis)
	tb.Cleanup(s.Stop)
	return b
}

// Registry is what a trial does to the registry and how it sees the result.
type Registry struct {
	// Add puts the leaving backend in the registry.
	Add func()
	// Remove takes it out.
	Remove func()
	// WaitRemoved returns once the client's resolver has published a state
	// without it.
	WaitRemoved func()
	// Pause, if set, is waited (untimed) before each trial, so that each
	// removal is a lone change to a rate-limited resolver.
	Pause time.Duration
}

// Measure runs b.N trials under a load of 4 callers on conn (health checks
// of the empty service name), each: add leave, wait for it to get calls,
// remove it, wait for the resolver, wait for every call in flight then to
// finish, and take the time of the last call that reached leave. It
// reports the median and p90 in milliseconds; no call may fail.
func Measure(b *testing.B, conn grpc.ClientConnInterface, stay, leave *Backend, reg Registry) {
	const callers = 4
	var (
		stop     = make(chan struct{})
		wg       sync.WaitGroup
		finished [callers]atomic.Int64 // start time of each caller's last finished call
		failed   atomic.Int64
	)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := healthpb.NewHealthClient(conn)
			for {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now().UnixNano()
				if _, err := client.Check(context.Background(), &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true)); err != nil {
					failed.Add(1)
				}
				finished[i].Store(start)
			}
		}()
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()

	var samples []time.Duration
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		if reg.Pause > 0 {
			time.Sleep(reg.Pause) // part of the scenario: changes far apart
		}
		reg.Add()
		for len(leave.hit) > 0 {
			<-leave.hit
		}
		select {
		case <-leave.hit:
		case <-time.After(Timeout):
			b.Fatal("the added instance got no call")
		}
		b.StartTimer()
		removed := time.Now()
		reg.Remove()
		reg.WaitRemoved()
		updated := time.Now().UnixNano()
		deadline := time.NewTimer(Timeout)
		for i := range callers {
			for finished[i].Load() < updated {
				select {
				case <-stay.hit: // another call went through: look again
				case <-deadline.C:
					b.Fatal("calls in flight at the update did not finish")
				}
			}
		}
		deadline.Stop()
		samples = append(samples, max(time.Duration(leave.last.Load()-removed.UnixNano()), 0))
	}
	b.StopTimer()
	if n := failed.Load(); n != 0 {
		b.Errorf("%d calls failed", n)
	}
	slices.Sort(samples)
	b.ReportMetric(float64(samples[len(samples)/2].Microseconds())/1000, "median-ms")
	b.ReportMetric(float64(samples[len(samples)*9/10].Microseconds())/1000, "p90-ms")
}

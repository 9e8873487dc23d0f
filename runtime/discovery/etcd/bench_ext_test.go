package etcd_test

import (
	"context"
	"encoding/json"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	etcdnaming "go.etcd.io/etcd/client/v3/naming/resolver"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/resolver"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/etcd"
)

// BenchmarkDeregisterToLastCall measures, per trial, the time from deleting
// an instance's key to the last call that reaches that instance, with our
// resolver and, in the same run, etcd's own client/v3/naming resolver. Run
// it with -benchtime=30x (30 trials); it reports the median and p90.
//
//	go test ./runtime/discovery/etcd -run '^$' -bench DeregisterToLastCall -benchtime 30x
func BenchmarkDeregisterToLastCall(b *testing.B) {
	s := startEtcd(b)
	for _, bc := range []struct {
		name    string
		target  string
		builder func() resolver.Builder
	}{
		{"lb", "etcd://" + s.Endpoint() + "/services/bench", func() resolver.Builder { return etcd.NewBuilder() }},
		{"etcd-naming", "etcd:////services/bench", func() resolver.Builder {
			rb, err := etcdnaming.NewBuilder(rawClient(b, s.Endpoint()))
			if err != nil {
				b.Fatal(err)
			}
			return rb
		}},
	} {
		b.Run(bc.name, func(b *testing.B) { benchDeregister(b, s.Endpoint(), bc.target, bc.builder()) })
	}
}

// benchBackend is a health server that records when calls reach it.
type benchBackend struct {
	addr string
	last atomic.Int64  // UnixNano of the last call's arrival
	hit  chan struct{} // gets a token per call, when there is room
}

func startBenchBackend(b *testing.B) *benchBackend {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	bb := &benchBackend{addr: lis.Addr().String(), hit: make(chan struct{}, 1)}
	s := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		bb.last.Store(time.Now().UnixNano())
		select {
		case bb.hit <- struct{}{}:
		default:
		}
		return h(ctx, req)
	}))
	healthpb.RegisterHealthServer(s, health.NewServer())
	go s.Serve(lis)
	b.Cleanup(s.Stop)
	return bb
}

func benchDeregister(b *testing.B, endpoint, target string, builder resolver.Builder) {
	c := rawClient(b, endpoint)
	stay, leave := startBenchBackend(b), startBenchBackend(b)
	value := func(addr string) string {
		v, _ := json.Marshal(map[string]any{"Op": 0, "Addr": addr})
		return string(v)
	}
	if _, err := c.Put(ctxT(b), "/services/bench/stay", value(stay.addr)); err != nil {
		b.Fatal(err)
	}
	rb := &recordingBuilder{Builder: builder, changed: make(chan struct{})}
	conn, err := grpc.NewClient(target, grpc.WithResolvers(rb), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()

	// Load: callers without pause. Each reports the start time of the call
	// it just finished, so the benchmark knows when the calls in flight at
	// an update are all done.
	const callers = 4
	var (
		stop     = make(chan struct{})
		wg       sync.WaitGroup
		finished [callers]atomic.Int64
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
		if _, err := c.Put(ctxT(b), "/services/bench/leave", value(leave.addr)); err != nil {
			b.Fatal(err)
		}
		for len(leave.hit) > 0 {
			<-leave.hit
		}
		select {
		case <-leave.hit: // calls reach it
		case <-time.After(timeout):
			b.Fatal("the added instance got no call")
		}
		b.StartTimer()
		deleted := time.Now()
		if _, err := c.Delete(ctxT(b), "/services/bench/leave"); err != nil {
			b.Fatal(err)
		}
		rb.waitFor(b, 1)
		updated := time.Now().UnixNano()
		// Every call that started before the update must be done.
		deadline := time.NewTimer(timeout)
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
		samples = append(samples, max(time.Duration(leave.last.Load()-deleted.UnixNano()), 0))
	}
	b.StopTimer()
	if n := failed.Load(); n != 0 {
		b.Errorf("%d calls failed", n)
	}
	slices.Sort(samples)
	b.ReportMetric(float64(samples[len(samples)/2].Microseconds())/1000, "median-ms")
	b.ReportMetric(float64(samples[len(samples)*9/10].Microseconds())/1000, "p90-ms")
}

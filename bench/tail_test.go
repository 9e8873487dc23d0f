package bench

import (
	"context"
	"flag"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"

	_ "github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/static"
)

var (
	tailDuration = flag.Duration("tail.duration", 40*time.Second, "BenchmarkTail: how long each policy is measured")
	tailWarmup   = flag.Duration("tail.warmup", time.Second, "BenchmarkTail: calls sent at the same rate before measuring, per policy")
	tailRate     = flag.Int("tail.rate", 1000, "BenchmarkTail: calls a second, sent on schedule whatever the replies")
	tailRounds   = flag.Int("tail.rounds", 1, "BenchmarkTail: how many times each policy is measured, the policies taking turns (all of round 1, then all of round 2, ...), so that a change in the machine's load falls on all of them alike")
	tailChurn    = flag.Duration("tail.churn", 0, "BenchmarkTail: this often, an eleventh backend (a fast one) joins the ten or leaves them again, as instances do in a rolling deploy or when a fleet scales (0: never; the ten alone, from the static resolver)")
	tailOut      = flag.String("tail.out", "", "BenchmarkTail: directory to write each policy's latency histogram to, <policy>.csv, all rounds pooled (none: not written)")
)

// tailPooled is each policy's latencies over the rounds so far, sorted:
// what its histogram shows.
var tailPooled = map[string][]time.Duration{}

const (
	tailBackends = 10
	tailSlow     = 0                     // the index of the slow backend
	tailDelay    = 50 * time.Millisecond // what the slow backend adds to each call
	tailTimeout  = 5 * time.Second       // the deadline of each call
)

// tailPolicies are the policies BenchmarkTail compares.
var tailPolicies = []policy{
	{label: "round_robin", name: "round_robin", config: `{}`},
	{label: "least_request_experimental", name: "least_request_experimental", config: `{"choiceCount":2}`},
	{label: "gozero_p2c_ewma", name: "p2c_ewma", config: `{}`},
	{label: "kratos_p2c", name: "selector", config: `{}`},
	{label: "lb_least_request", name: "lb_least_request", config: `{"choiceCount":2}`, ours: true},
	{label: "lb_p2c_ewma", name: "lb_p2c_ewma", config: `{}`, ours: true},
}

// BenchmarkTail sends unary calls to ten gRPC backends on loopback, one of
// which takes 50 ms longer than the others, open loop: call i leaves at
// start + i/rate whether or not earlier calls have returned, and its latency
// counts from then, so a stalled client is not hidden (no coordinated
// omission). One run per policy and round, whatever b.N (use -benchtime
// 1x); it reports the share of calls the slow backend served
// (slow-share-%) and the 50th, 99th and 99.9th latency percentiles in ms,
// and with -tail.out writes the latency histogram of each policy for
// docs/bench's plot (of all its rounds together).
//
// With -tail.rounds N the policies take turns N times, rather than each
// running N times in a row as -count does: the machine's load, which
// drifts over minutes on a shared machine, then falls on every policy
// alike, and round k of two policies can be compared. Rounds after the
// first are named as go test names repeated sub-benchmarks,
// policy=<label>#01, #02, ...
func BenchmarkTail(b *testing.B) {
	// The last one only joins with -tail.churn.
	addrs := startBackends(b, tailBackends+1, func(i int, be *backend) {
		if i == tailSlow {
			be.delay = tailDelay
		}
	})
	for range max(1, *tailRounds) {
		for _, p := range tailPolicies {
			b.Run("policy="+p.label, func(b *testing.B) {
				r := runTail(b, p, addrs)
				b.ReportMetric(0, "ns/op") // one run whatever b.N: meaningless
				b.ReportMetric(100*float64(r.served[tailSlow])/float64(len(r.latencies)), "slow-share-%")
				b.ReportMetric(ms(quantile(r.latencies, 0.50)), "p50-ms")
				b.ReportMetric(ms(quantile(r.latencies, 0.99)), "p99-ms")
				b.ReportMetric(ms(quantile(r.latencies, 0.999)), "p999-ms")
				b.ReportMetric(float64(r.errors), "errors")
				if *tailOut != "" {
					pooled := append(tailPooled[p.label], r.latencies...)
					slices.Sort(pooled)
					tailPooled[p.label] = pooled
					if err := writeHistogram(filepath.Join(*tailOut, p.label+".csv"), pooled); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// tailResult is what one policy's run measured, warm-up left out.
type tailResult struct {
	latencies []time.Duration       // sorted
	served    [tailBackends + 1]int // the last: the one that joins with -tail.churn
	errors    int
}

// runTail sends calls through a new client of policy p for the warm-up and
// the measured duration, at the given rate.
func runTail(b *testing.B, p policy, addrs []string) tailResult {
	sc := fmt.Sprintf(`{"loadBalancingConfig":[{%q:%s}],"healthCheckConfig":{"serviceName":""}}`, p.name, p.config)
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(sc),
	}
	target := "static:///" + strings.Join(addrs[:tailBackends], ",")
	var churn func() (stop func()) // starts the updates of -tail.churn
	if *tailChurn > 0 {
		var ten, eleven resolver.State
		for i, a := range addrs {
			addr := resolver.Address{Addr: a}
			if i < tailBackends {
				ten.Addresses = append(ten.Addresses, addr)
				ten.Endpoints = append(ten.Endpoints, resolver.Endpoint{Addresses: []resolver.Address{addr}})
			}
			eleven.Addresses = append(eleven.Addresses, addr)
			eleven.Endpoints = append(eleven.Endpoints, resolver.Endpoint{Addresses: []resolver.Address{addr}})
		}
		r := manual.NewBuilderWithScheme("tail")
		r.InitialState(ten)
		opts = append(opts, grpc.WithResolvers(r))
		target = "tail:///backends"
		churn = func() (stop func()) {
			quit, stopped := make(chan struct{}), make(chan struct{})
			go func() {
				defer close(stopped)
				t := time.NewTicker(*tailChurn)
				defer t.Stop()
				for joined := false; ; joined = !joined {
					select {
					case <-quit:
						return
					case <-t.C:
					}
					if joined {
						r.UpdateState(ten)
					} else {
						r.UpdateState(eleven)
					}
				}
			}()
			return func() { close(quit); <-stopped }
		}
	}
	conn, err := grpc.NewClient(target, opts...)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	if churn != nil {
		defer churn()() // stops the updates before conn.Close
	}
	interval := time.Second / time.Duration(*tailRate)
	warm := int(*tailWarmup / interval)
	calls := openLoop(testpb.NewTestServiceClient(conn), warm+int(*tailDuration/interval), *tailRate, nil)

	var r tailResult
	r.latencies = make([]time.Duration, 0, len(calls)-warm)
	for _, c := range calls[warm:] {
		r.latencies = append(r.latencies, c.latency)
		if c.err != nil {
			r.errors++
		} else {
			r.served[c.backend]++
		}
	}
	slices.Sort(r.latencies)
	return r
}

// outcome is one call of openLoop.
type outcome struct {
	latency time.Duration // from when it was due
	backend int           // the index of the backend that answered, or failed it; -1: none did
	err     error
}

// openLoop sends total unary calls through client, open loop: call i
// leaves at start + i/rate whether or not earlier calls have returned,
// and its latency counts from then, so a stalled client is not hidden (no
// coordinated omission). before, if not nil, is called with i just before
// call i leaves. Each call has a deadline of tailTimeout.
func openLoop(client testpb.TestServiceClient, total, rate int, before func(i int)) []outcome {
	req := &testpb.SimpleRequest{FillServerId: true}
	interval := time.Second / time.Duration(rate)
	calls := make([]outcome, total)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range total {
		at := start.Add(time.Duration(i) * interval)
		if d := time.Until(at); d > 0 {
			time.Sleep(d)
		}
		if before != nil {
			before(i)
		}
		wg.Go(func() {
			ctx, cancel := context.WithDeadline(context.Background(), at.Add(tailTimeout))
			defer cancel()
			resp, err := client.UnaryCall(ctx, req)
			c := outcome{latency: time.Since(at), backend: -1, err: err}
			if err == nil {
				c.backend, _ = strconv.Atoi(resp.GetServerId())
			} else if _, after, ok := strings.Cut(status.Convert(err).Message(), failMsgPrefix); ok {
				c.backend, _ = strconv.Atoi(after)
			}
			calls[i] = c
		})
	}
	wg.Wait()
	return calls
}

// startBackends starts n gRPC servers on loopback, each with the health
// service SERVING and grpc.testing.TestService's UnaryCall answering its
// index as the server id; setup, if not nil, sets each backend's behaviour
// before its server starts.
func startBackends(b *testing.B, n int, setup func(i int, be *backend)) []string {
	addrs := make([]string, n)
	for i := range n {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		s := grpc.NewServer()
		be := &backend{index: i, resp: &testpb.SimpleResponse{ServerId: strconv.Itoa(i)}}
		if setup != nil {
			setup(i, be)
		}
		testpb.RegisterTestServiceServer(s, be)
		healthpb.RegisterHealthServer(s, health.NewServer()) // "" SERVING
		go s.Serve(lis)
		b.Cleanup(s.Stop)
		addrs[i] = lis.Addr().String()
	}
	return addrs
}

// failMsgPrefix starts the message of a call a backend fails on purpose,
// followed by the backend's index.
const failMsgPrefix = "bench: failed on purpose by backend "

type backend struct {
	testpb.UnimplementedTestServiceServer
	index int
	resp  *testpb.SimpleResponse // shared: only read when marshalled
	delay time.Duration
	// failing, while set, fails a share of the calls (BenchmarkGray).
	failing atomic.Pointer[failure]
	calls   atomic.Int64 // calls while failing was set
}

// failure is how a backend fails calls: percent of them, evenly spread
// (call k fails when floor(k*percent/100) steps up), the failed ones
// taking codes in turn.
type failure struct {
	percent int64
	codes   []codes.Code
}

func (be *backend) UnaryCall(ctx context.Context, _ *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	if f := be.failing.Load(); f != nil {
		k := be.calls.Add(1) - 1
		if n := (k + 1) * f.percent / 100; n > k*f.percent/100 {
			return nil, status.Error(f.codes[n%int64(len(f.codes))], failMsgPrefix+strconv.Itoa(be.index))
		}
	}
	if be.delay > 0 {
		t := time.NewTimer(be.delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return be.resp, nil
}

// quantile returns the q-quantile of sorted (nearest rank).
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Histogram buckets: histPerDecade a decade, log-spaced, from histMin up.
const (
	histMin       = 10 * time.Microsecond
	histPerDecade = 50
)

// writeHistogram writes the latencies (sorted) to path as CSV rows
// "le_ms,count": the calls that took at most le_ms and more than the row
// before's, from the first non-empty bucket to the last.
func writeHistogram(path string, sorted []time.Duration) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	var sb strings.Builder
	sb.WriteString("le_ms,count\n")
	i := 0
	for k := 0; i < len(sorted); k++ {
		le := time.Duration(float64(histMin) * math.Pow(10, float64(k)/histPerDecade))
		n := 0
		for i < len(sorted) && sorted[i] <= le {
			i++
			n++
		}
		if n > 0 || i > 0 {
			fmt.Fprintf(&sb, "%.4g,%d\n", ms(le), n)
		}
	}
	return os.WriteFile(path, []byte(sb.String()), 0o644)
}

// Command demo runs an embedded etcd, three greeter servers that register
// themselves in it through the generated helper, and a balanced client that
// finds them there. It prints how the client's calls spread over the
// backends; turns one backend bad (it answers INTERNAL while its health
// stays SERVING) and shows the client eject it after 5 failed calls and
// take it back once it recovers; shuts one server down (NOT_SERVING,
// deregistered, graceful stop) and shows its traffic moving to the
// others; then prints the
// OpenTelemetry metrics the client and servers recorded (lb.WithMetrics).
// While it runs it serves the live page (lb.DebugHandler) on a loopback
// port and prints its address, and it keeps serving it, with the client
// calling, for -hold after the rounds. It ends by itself: `make demo`.
// With -etcd it uses an etcd you run instead.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/example/greeter"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/example/helloworld"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/etcdserver"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/lb"
)

const callsPerRound = 300

func main() {
	endpoint := flag.String("etcd", "", "etcd endpoint (default: start an embedded etcd on a free port)")
	httpAddr := flag.String("http", "127.0.0.1:0", "where to serve the live page")
	hold := flag.Duration("hold", 30*time.Second, "how long to keep serving the live page, the client calling, after the rounds (Ctrl-C ends it)")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second+*hold)
	defer cancel()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()
	if err := runWith(ctx, os.Stdout, *endpoint, livePage{Addr: *httpAddr, Hold: *hold}); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// livePage is where and how long the demo serves the live page.
type livePage struct {
	// Addr is the listen address; empty: no page.
	Addr string
	// Hold is how long the page stays up after the rounds, with the client
	// calling; the demo ends early, without an error, when ctx does.
	Hold time.Duration
	// Check, if set, is called with the page's URL once all three servers
	// took calls ("up") and once one of them shut down ("after shutdown").
	Check func(ctx context.Context, url, stage string) error
}

func run(ctx context.Context, w io.Writer, endpoint string) error {
	return runWith(ctx, w, endpoint, livePage{})
}

func runWith(ctx context.Context, w io.Writer, endpoint string, page livePage) error {
	pageURL := ""
	if page.Addr != "" {
		lis, err := net.Listen("tcp", page.Addr)
		if err != nil {
			return err
		}
		mux := http.NewServeMux()
		mux.Handle("/debug/lb/", http.StripPrefix("/debug/lb", lb.DebugHandler()))
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(lis)
		defer srv.Close()
		pageURL = "http://" + lis.Addr().String() + "/debug/lb/"
		fmt.Fprintf(w, "live page: %s\n", pageURL)
	}
	check := func(stage string) error {
		if page.Check == nil || pageURL == "" {
			return nil
		}
		return page.Check(ctx, pageURL, stage)
	}
	if endpoint == "" {
		dir, err := os.MkdirTemp("", "lb-demo-etcd")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		etcd, err := etcdserver.Start(dir, "")
		if err != nil {
			return err
		}
		defer etcd.Stop()
		endpoint = etcd.Endpoint()
		fmt.Fprintf(w, "started an embedded etcd on %s\n", endpoint)
	}

	// One MeterProvider for the client and the servers; a real program
	// gives it an exporter (README: Metrics) instead of this reader.
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())

	var servers []*greeter.Instance
	defer func() {
		for _, s := range servers {
			s.Registration.Shutdown(ctx)
		}
	}()
	var addrs []string
	for range 3 {
		s, err := greeter.Start("127.0.0.1:0", greeter.Options{Registry: endpoint, Metrics: mp})
		if s != nil {
			servers = append(servers, s)
		}
		if err != nil {
			return err
		}
		addrs = append(addrs, s.Addr)
	}
	// Each server goes in etcd once it serves.
	for _, s := range servers {
		if err := s.Registration.WaitRegistered(ctx); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "started %d greeter servers, registered in etcd under /services/%s/: %s\n",
		len(addrs), helloworld.GreeterServiceName, strings.Join(addrs, ", "))

	client, err := helloworld.NewGreeterBalancedClient(ctx, lb.WithInsecure(), lb.WithRegistryAddress(endpoint), lb.WithBlock(), lb.WithMetrics(mp))
	if err != nil {
		return err
	}
	defer client.Close()

	if err := round(ctx, w, client, "all three up"); err != nil {
		return err
	}
	if err := check("up"); err != nil {
		return err
	}
	if err := gray(ctx, w, client, servers[2]); err != nil {
		return err
	}
	stopped := servers[0]
	servers = servers[1:]
	fmt.Fprintf(w, "shutting down %s (NOT_SERVING, deregistered from etcd, graceful stop)\n", stopped.Addr)
	if err := stopped.Registration.Shutdown(ctx); err != nil {
		return err
	}
	rep := stopped.Registration.LastShutdown()
	fmt.Fprintf(w, "  %d health watcher(s) told NOT_SERVING in %v, drained in %v\n", rep.Watchers, rep.Propagation.Round(time.Microsecond), rep.Drain.Round(time.Microsecond))
	if err := round(ctx, w, client, "after stopping "+stopped.Addr); err != nil {
		return err
	}
	if err := check("after shutdown"); err != nil {
		return err
	}
	if err := printMetrics(ctx, w, reader); err != nil {
		return err
	}
	if pageURL != "" && page.Hold > 0 {
		fmt.Fprintf(w, "serving the live page at %s for %v, the client calling (Ctrl-C ends it)\n", pageURL, page.Hold)
		hold(ctx, client, page.Hold)
	}
	return nil
}

// maxGrayFailures is how many calls the gray round may fail for each time
// the bad backend is ejected: the 5 in a row that eject it
// (outlier_ejection's default), with one call in flight at a time.
const maxGrayFailures = 5

// ejectionTime is the first ejection's length, helloworld.proto's
// outlier_ejection.base_ejection_time (±10%: the bound below takes 10%
// off).
const ejectionTime = 2700 * time.Millisecond

// gray turns bad's calls into INTERNAL errors while its health stays
// SERVING, shows the client eject it, then lets it recover and shows it
// back once its ejection (3 s, declared in helloworld.proto) is over.
func gray(ctx context.Context, w io.Writer, c *helloworld.GreeterBalancedClient, bad *greeter.Instance) error {
	fmt.Fprintf(w, "turning %s bad: it answers INTERNAL, its health stays SERVING\n", bad.Addr)
	bad.Impl.Bad.Store(true)
	start := time.Now()
	counts, failed := calls(ctx, c, callsPerRound)
	printRound(w, "one backend bad", counts, failed)
	// On a busy machine the round can outlast the first ejection (3 s):
	// the backend comes back, fails 5 more, and goes out for 6 s, ...
	ejections := 1
	for end := ejectionTime; end < time.Since(start); end += time.Duration(ejections) * ejectionTime {
		ejections++
	}
	if failed > maxGrayFailures*ejections {
		return fmt.Errorf("%d calls failed with one backend bad, want at most %d (%d in a row eject it, for %v the first time): it was not ejected", failed, maxGrayFailures*ejections, maxGrayFailures, ejectionTime)
	}
	if counts[bad.Addr] != 0 {
		return fmt.Errorf("the bad backend answered %d calls", counts[bad.Addr])
	}
	fmt.Fprintf(w, "%s recovers; the client takes it back when its ejection ends\n", bad.Addr)
	bad.Impl.Bad.Store(false)
	start = time.Now()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		reply, err := c.SayHello(ctx, &helloworld.HelloRequest{Name: "demo"})
		if err == nil && reply.GetBackend() == bad.Addr {
			break
		}
		if err != nil {
			return fmt.Errorf("a call failed while %s was out: %w", bad.Addr, err)
		}
	}
	fmt.Fprintf(w, "  %s took a call again %v after it recovered\n", bad.Addr, time.Since(start).Round(10*time.Millisecond))
	return round(ctx, w, c, "after "+bad.Addr+" recovered")
}

// hold calls through c ten times a second for d, or until ctx ends, so
// that the live page shows calls moving.
func hold(ctx context.Context, c *helloworld.GreeterBalancedClient, d time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			c.SayHello(ctx, &helloworld.HelloRequest{Name: "demo"})
		}
	}
}

// printMetrics prints a summary of the metrics this module records (lb.*)
// and grpc-go's call counts.
func printMetrics(ctx context.Context, w io.Writer, r *sdkmetric.ManualReader) error {
	var rm metricdata.ResourceMetrics
	if err := r.Collect(ctx, &rm); err != nil {
		return err
	}
	fmt.Fprintln(w, "metrics (OpenTelemetry):")
	var lines []string
	add := func(name string, attrs attribute.Set, value string) {
		var labels []string
		for _, kv := range attrs.ToSlice() {
			switch kv.Key {
			case "grpc.target", "lb.service", "lb.discovery.watch", "grpc.status":
				continue // the same for every line here, or too long
			}
			labels = append(labels, string(kv.Key)+"="+kv.Value.Emit())
		}
		l := name
		if len(labels) > 0 {
			l += "{" + strings.Join(labels, ",") + "}"
		}
		lines = append(lines, fmt.Sprintf("  %-58s %s", l, value))
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if !strings.HasPrefix(m.Name, "lb.") && m.Name != "grpc.client.attempt.started" && m.Name != "grpc.server.call.started" {
				continue
			}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					add(m.Name, p.Attributes, fmt.Sprint(p.Value))
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					add(m.Name, p.Attributes, strings.TrimSuffix(fmt.Sprint(p.Value, " ", m.Unit), " 1"))
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					add(m.Name, p.Attributes, fmt.Sprintf("%d sample(s), sum %.4f %s", p.Count, p.Sum, m.Unit))
				}
			}
		}
	}
	slices.Sort(lines)
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
	return nil
}

// round makes callsPerRound calls and prints the count per backend; it
// fails if a call does.
func round(ctx context.Context, w io.Writer, c *helloworld.GreeterBalancedClient, title string) error {
	counts, failed := calls(ctx, c, callsPerRound)
	printRound(w, title, counts, failed)
	if failed > 0 {
		return fmt.Errorf("%d calls failed", failed)
	}
	return ctx.Err()
}

// calls makes n calls and returns the count per backend and of failures.
func calls(ctx context.Context, c *helloworld.GreeterBalancedClient, n int) (counts map[string]int, failed int) {
	counts = map[string]int{}
	for range n {
		reply, err := c.SayHello(ctx, &helloworld.HelloRequest{Name: "demo"})
		if err != nil {
			failed++
			continue
		}
		counts[reply.GetBackend()]++
	}
	return counts, failed
}

func printRound(w io.Writer, title string, counts map[string]int, failed int) {
	fmt.Fprintf(w, "%d calls, %s:\n", callsPerRound, title)
	for _, b := range slices.Sorted(maps.Keys(counts)) {
		fmt.Fprintf(w, "  %-21s %4d %s\n", b, counts[b], strings.Repeat("#", counts[b]/5))
	}
	fmt.Fprintf(w, "  failed                %4d\n", failed)
}

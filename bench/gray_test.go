package bench

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	// Registers grpc-go's outlier_detection_experimental (gRFC A50), with
	// the rest of xDS: only this module imports it.
	_ "google.golang.org/grpc/xds"
)

var (
	grayDuration = flag.Duration("gray.duration", 60*time.Second, "BenchmarkGray: how long each policy is measured from the moment the bad backend starts failing")
	grayWarmup   = flag.Duration("gray.warmup", time.Second, "BenchmarkGray: calls sent at the same rate before the bad backend starts failing, per policy (not measured)")
	grayRate     = flag.Int("gray.rate", 1000, "BenchmarkGray: calls a second, sent on schedule whatever the replies")
	grayOut      = flag.String("gray.out", "", "BenchmarkGray: directory to write each scenario's failed calls per second to, <scenario>.csv, a column per policy (none: not written)")
)

const (
	grayBackends = 10
	grayBad      = 0 // the index of the backend that fails calls
	// grayGap: the bad backend is taken to be ejected once this long
	// passes without a call to it. At 1,000 calls a second it gets one
	// every 10 ms while it takes its share; a p2c policy that shuns it
	// still probes it, but at most once a second.
	grayGap = 500 * time.Millisecond
)

// grayScenario is how the bad backend fails.
type grayScenario struct {
	name string
	fail failure
}

var grayScenarios = []grayScenario{
	{name: "fail100", fail: failure{percent: 100, codes: []codes.Code{codes.Unavailable}}},
	{name: "fail30", fail: failure{percent: 30, codes: []codes.Code{codes.Unavailable, codes.Internal}}},
}

// grayPolicies are the policies BenchmarkGray compares in every scenario.
var grayPolicies = []policy{
	{label: "round_robin", name: "round_robin", config: `{}`},
	// gRFC A50 as grpc-go implements it, with what an xDS control plane
	// sends for an Envoy OutlierDetection left at its defaults: success
	// rate ejection (stdev factor 1.9, 100 calls an interval, 5 hosts),
	// interval 10 s, base ejection 30 s, at most 10% out. Without
	// successRateEjection or failurePercentageEjection it ejects nothing.
	{label: "outlier_detection_experimental>round_robin", name: "outlier_detection_experimental", config: `{"successRateEjection":{},"childPolicy":[{"round_robin":{}}]}`},
	{label: "gozero_p2c_ewma", name: "p2c_ewma", config: `{}`},
	{label: "kratos_p2c", name: "selector", config: `{}`},
	withOutlier(policy{label: "round_robin", name: "round_robin", config: `{}`}),
	withOutlier(policy{label: "lb_p2c_ewma", name: "lb_p2c_ewma", config: `{}`}),
}

// grayFailed is each scenario's failed calls per second, by policy label,
// in the order the policies ran: what -gray.out writes.
var grayFailed = map[string][]column{}

// column is one policy's numbers in a CSV of a column per policy.
type column struct {
	label  string
	values []int
}

// BenchmarkGray sends unary calls to ten gRPC backends on loopback, open
// loop at -gray.rate (as BenchmarkTail does), through a new client of each
// policy. After -gray.warmup, one backend starts failing calls while its
// health service stays SERVING, a gray failure: scenario=fail100 fails
// every call with UNAVAILABLE, scenario=fail30 fails 30% of them, evenly
// spread, with UNAVAILABLE and INTERNAL by turns. Measured for
// -gray.duration from that moment; one run per policy and scenario,
// whatever b.N (use -benchtime 1x). Reported: failed (calls that failed),
// bad-calls (calls the bad backend got), eject-ms (from the onset to the
// last call the bad backend got before it first went grayGap without one;
// 0: from the onset; -1: it never did), bad-after (the bad backend's calls after that), and
// with -gray.out each scenario's failed calls per second, a column per
// policy.
func BenchmarkGray(b *testing.B) {
	for _, sc := range grayScenarios {
		b.Run("scenario="+sc.name, func(b *testing.B) {
			var bad *backend
			addrs := startBackends(b, grayBackends, func(i int, be *backend) {
				if i == grayBad {
					bad = be
				}
			})
			for _, p := range grayPolicies {
				b.Run("policy="+p.label, func(b *testing.B) {
					r := runGray(b, p, addrs, bad, sc.fail)
					b.ReportMetric(0, "ns/op") // one run whatever b.N: meaningless
					b.ReportMetric(float64(r.failed), "failed")
					b.ReportMetric(float64(r.badCalls), "bad-calls")
					b.ReportMetric(r.ejectMS, "eject-ms")
					b.ReportMetric(float64(r.badAfter), "bad-after")
					if *grayOut != "" {
						grayFailed[sc.name] = append(grayFailed[sc.name], column{p.label, r.failedPerSec})
						if err := writeColumns(filepath.Join(*grayOut, sc.name+".csv"), "second", grayFailed[sc.name]); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		})
	}
}

// grayResult is what one policy's run measured from the onset.
type grayResult struct {
	failed       int
	failedPerSec []int // by second since the onset
	badCalls     int
	ejectMS      float64 // -1: never
	badAfter     int
}

// runGray sends calls through a new client of policy p: -gray.warmup of
// them with every backend well, then -gray.duration of them with bad
// failing as f says.
func runGray(b *testing.B, p policy, addrs []string, bad *backend, f failure) grayResult {
	sc := fmt.Sprintf(`{"loadBalancingConfig":[{%q:%s}],"healthCheckConfig":{"serviceName":""}}`, p.name, p.config)
	conn, err := grpc.NewClient("static:///"+strings.Join(addrs, ","),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(sc))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	defer bad.failing.Store(nil)

	interval := time.Second / time.Duration(*grayRate)
	warm := int(*grayWarmup / interval)
	calls := openLoop(testpb.NewTestServiceClient(conn), warm+int(*grayDuration/interval), *grayRate, func(i int) {
		if i == warm {
			bad.calls.Store(0)
			bad.failing.Store(&f)
		}
	})

	r := grayResult{ejectMS: -1, failedPerSec: make([]int, (len(calls)-warm+*grayRate-1) / *grayRate)}
	var badAt []time.Duration // when each of the bad backend's calls was due, since the onset
	for k, c := range calls[warm:] {
		at := time.Duration(k) * interval
		if c.err != nil {
			r.failed++
			r.failedPerSec[k / *grayRate]++
		}
		if c.backend == grayBad {
			badAt = append(badAt, at)
		}
	}
	r.badCalls = len(badAt)
	// The first gap may come before any call to it: a policy that shunned
	// it already (a p2c one that found it slower in the warm-up).
	end := time.Duration(len(calls)-warm) * interval
	if len(badAt) == 0 || badAt[0] >= grayGap {
		r.ejectMS, r.badAfter = 0, len(badAt)
		return r
	}
	for i, at := range badAt {
		next := end
		if i+1 < len(badAt) {
			next = badAt[i+1]
		}
		if next-at >= grayGap {
			r.ejectMS = ms(at)
			r.badAfter = len(badAt) - i - 1
			break
		}
	}
	return r
}

// writeColumns writes cols to path as CSV: a header "<key>,<label>,...",
// then row k holds each column's value k (BenchmarkGray: key "second",
// the failed calls of second k since the onset).
func writeColumns(path, key string, cols []column) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	var sb strings.Builder
	sb.WriteString(key)
	rows := 0
	for _, c := range cols {
		sb.WriteString("," + c.label)
		rows = max(rows, len(c.values))
	}
	sb.WriteString("\n")
	for k := range rows {
		sb.WriteString(strconv.Itoa(k))
		for _, c := range cols {
			sb.WriteString(",")
			if k < len(c.values) {
				sb.WriteString(strconv.Itoa(c.values[k]))
			}
		}
		sb.WriteString("\n")
	}
	return os.WriteFile(path, []byte(sb.String()), 0o644)
}

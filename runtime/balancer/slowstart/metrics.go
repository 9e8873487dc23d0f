package slowstart

import (
	"fmt"

	"google.golang.org/grpc/balancer"
	estats "google.golang.org/grpc/experimental/stats"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/internal/parent"
)

// The policy's metrics, off by default as grpc-go's LB metrics are
// (lb.WithMetrics turns them on), reported when the channel's metrics are
// collected. The lb.instance label is the address of an instance that is
// warming now, so its values are bounded by the number of instances.
var (
	warmingMetric = estats.RegisterInt64AsyncGauge(estats.MetricDescriptor{
		Name:        "lb.slow_start.warming",
		Description: "EXPERIMENTAL. How many of a channel's instances are in their slow start window.",
		Unit:        "{instance}",
		Labels:      []string{"grpc.target"},
	})
	weightMetric = estats.RegisterInt64AsyncGauge(estats.MetricDescriptor{
		Name:        "lb.slow_start.weight",
		Description: "EXPERIMENTAL. A warming instance's share of a warm instance's calls, in percent: max(floor, (age/window)^(1/aggression)).",
		Unit:        "%",
		Labels:      []string{"grpc.target", "lb.instance"},
	})
)

// MetricNames are the names of the policy's metrics, for a channel's
// OpenTelemetry options.
var MetricNames = []string{"lb.slow_start.warming", "lb.slow_start.weight"}

// registerReporter reports b's warming instances through the channel's
// MetricsRecorder, until the returned func is called; nil without one.
func registerReporter(b *slowStartBalancer, cc balancer.ClientConn, opts balancer.BuildOptions) func() {
	mr := cc.MetricsRecorder()
	if mr == nil {
		return nil
	}
	target := parent.Target(opts)
	// It reads the view, without a lock: a collection holds the metrics
	// SDK's lock while it asks.
	return mr.RegisterAsyncReporter(estats.AsyncMetricReporterFunc(func(r estats.AsyncMetricsRecorder) error {
		v := b.view.Load()
		if v == nil {
			return nil
		}
		now := clk.Nanotime()
		warming := int64(0)
		for _, in := range v.instances {
			if f, ok := in.warmingAt(v.ramp, now); ok {
				warming++
				weightMetric.Record(r, int64(f*100), target, in.addr)
			}
		}
		warmingMetric.Record(r, warming, target)
		return nil
	}), warmingMetric, weightMetric)
}

// describe says "warming (37%)" of each warming instance, for the live
// page, and nothing of the others.
func (b *slowStartBalancer) describe() map[string]string {
	v := b.view.Load()
	if v == nil {
		return nil
	}
	now := clk.Nanotime()
	out := make(map[string]string, len(v.instances))
	for _, in := range v.instances {
		if f, ok := in.warmingAt(v.ramp, now); ok {
			out[in.addr] = fmt.Sprintf("warming (%d%%)", int(f*100))
		}
	}
	return out
}

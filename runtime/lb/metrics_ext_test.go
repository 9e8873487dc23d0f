package lb_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/etcdserver"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/resolvertest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/testbackend"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/etcd"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/static"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/lb"
)

// metrics is one collection of a ManualReader: each metric's data points,
// by name.
type metrics map[string][]point

type point struct {
	attrs attribute.Set
	value float64 // a sum's or gauge's value, a histogram's count
}

// newMeterProvider returns a MeterProvider whose metrics the reader
// collects on demand, shut down with the test.
func newMeterProvider(t *testing.T) (*sdkmetric.ManualReader, *sdkmetric.MeterProvider) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { mp.Shutdown(context.Background()) })
	return reader, mp
}

func collect(t *testing.T, r *sdkmetric.ManualReader) metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := metrics{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			var ps []point
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				ps = values(d.DataPoints)
			case metricdata.Sum[float64]:
				ps = values(d.DataPoints)
			case metricdata.Gauge[int64]:
				ps = values(d.DataPoints)
			case metricdata.Gauge[float64]:
				ps = values(d.DataPoints)
			case metricdata.Histogram[float64]:
				ps = counts(d.DataPoints)
			case metricdata.Histogram[int64]:
				ps = counts(d.DataPoints)
			}
			out[m.Name] = append(out[m.Name], ps...)
		}
	}
	return out
}

func values[N int64 | float64](dps []metricdata.DataPoint[N]) []point {
	var ps []point
	for _, p := range dps {
		ps = append(ps, point{p.Attributes, float64(p.Value)})
	}
	return ps
}

func counts[N int64 | float64](dps []metricdata.HistogramDataPoint[N]) []point {
	var ps []point
	for _, p := range dps {
		ps = append(ps, point{p.Attributes, float64(p.Count)})
	}
	return ps
}

// sum adds up the points of name whose attributes include every one of
// where.
func (m metrics) sum(name string, where ...attribute.KeyValue) float64 {
	var s float64
	for _, p := range m[name] {
		ok := true
		for _, kv := range where {
			v, found := p.attrs.Value(kv.Key)
			ok = ok && found && v == kv.Value
		}
		if ok {
			s += p.value
		}
	}
	return s
}

// byLabel sums the points of name by the value of label.
func (m metrics) byLabel(name string, label attribute.Key) map[string]float64 {
	out := map[string]float64{}
	for _, p := range m[name] {
		v, _ := p.attrs.Value(label)
		out[v.Emit()] += p.value
	}
	return out
}

// checkLabels fails the test when a label of this module's metrics is not
// one of the bounded ones, or any label value carries secret.
func (m metrics) checkLabels(t *testing.T, secret string) {
	t.Helper()
	allowed := map[attribute.Key]bool{
		"grpc.target": true, "grpc.method": true, "lb.service": true, "lb.instance": true,
		"lb.discovery.watch": true, "lb.discovery.error": true, "lb.discovery.drop_reason": true,
		"lb.discovery.backend": true, "lb.hedge": true, "lb.outlier.mode": true, "lb.locality.level": true,
	}
	for name, ps := range m {
		for _, p := range ps {
			for _, kv := range p.attrs.ToSlice() {
				if strings.HasPrefix(name, "lb.") && !allowed[kv.Key] {
					t.Errorf("%s has label %s", name, kv.Key)
				}
				if secret != "" && strings.Contains(kv.Value.Emit(), secret) {
					t.Errorf("%s label %s = %q carries the secret", name, kv.Key, kv.Value.Emit())
				}
			}
		}
	}
}

// TestClientMetrics: one client's metrics agree with what happened. Of 3
// backends one fails every call: the retried method's retries, the
// hedged method's hedges, the calls each instance got, and grpc-go's own
// attempt counts all tell the same story; the watch reports its updates
// and instances, and no label is unbounded.
func TestClientMetrics(t *testing.T) {
	bs, addrs := testbackend.StartN(t, 3)
	bs[2].Fail.Store(true)
	reader, mp := newMeterProvider(t)
	svc := &lb.Service{
		FullName:    testbackend.EchoService,
		Discovery:   static.Config{Addresses: addrs},
		Balancer:    lb.RoundRobin{},
		RetryBudget: &lb.RetryBudget{Disabled: true}, // a third of the attempts fail
		Methods: []lb.Method{
			{Name: "Retried", Idempotent: true, Retry: &lb.Retry{MaxAttempts: 3, InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond, BackoffMultiplier: 1, RetryableCodes: []codes.Code{codes.Unavailable}}},
			{Name: "Hedged", Idempotent: true, Hedging: &lb.Hedging{MaxAttempts: 3, Delay: time.Second}},
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), resolvertest.Timeout)
	defer cancel()
	c, err := lb.Dial(ctx, svc, lb.WithInsecure(), lb.WithBlock(), lb.WithMetrics(mp))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitCalled(t, ctx, c, bs[0], bs[1])
	const n = 60
	for _, m := range []string{"Retried", "Hedged"} {
		for i := range n {
			if err := testbackend.Echo(ctx, c, m, wrapperspb.String(fmt.Sprint(m, i))); err != nil {
				t.Fatalf("%s call %d: %v", m, i, err)
			}
		}
	}
	got := collect(t, reader)
	got.checkLabels(t, "")
	// grpc-go's view: every attempt, and every call (each hedge is a
	// call of its own below the hedger).
	attempts := got.sum("grpc.client.attempt.started")
	calls := got.sum("grpc.client.call.duration")
	if picks := got.sum("lb.client.picks"); picks != attempts || attempts == 0 {
		t.Errorf("lb.client.picks = %v, grpc.client.attempt.started = %v: want equal and not 0", picks, attempts)
	}
	failing := got.sum("lb.client.picks", attribute.String("lb.instance", bs[2].Addr))
	if failing == 0 {
		t.Errorf("no pick of the failing backend %s: %v", bs[2].Addr, got.byLabel("lb.client.picks", "lb.instance"))
	}
	retries := got.sum("lb.client.retries", attribute.String("grpc.method", testbackend.EchoService+"/Retried"))
	if all := got.sum("lb.client.retries"); retries == 0 || retries != all || retries != attempts-calls {
		t.Errorf("lb.client.retries = %v of Retried, %v in all; want the attempts beyond one per call (%v - %v), and not 0", retries, all, attempts, calls)
	}
	st := c.HedgeStats()
	sent := got.sum("lb.client.hedges", attribute.String("lb.hedge", "sent"))
	won := got.sum("lb.client.hedges", attribute.String("lb.hedge", "won"))
	if sent == 0 || sent != float64(st.Sent) || won != float64(st.Won) {
		t.Errorf("lb.client.hedges sent %v won %v; HedgeStats %+v; want the same, and some sent", sent, won, st)
	}
	// The watch's view, through grpc-go's MetricsRecorder.
	if u := got.sum("lb.discovery.updates"); u < 1 {
		t.Errorf("lb.discovery.updates = %v, want at least 1", u)
	}
	if i := got.sum("lb.discovery.instances"); i != 3 {
		t.Errorf("lb.discovery.instances = %v, want 3", i)
	}
	if s, ok := got["lb.discovery.staleness"]; !ok || got.sum("lb.discovery.staleness") != 0 {
		t.Errorf("lb.discovery.staleness = %v, want reported and 0", s)
	}
}

// TestP2CScoreMetric: the p2c_ewma policy reports each instance's score
// through the channel's MetricsRecorder, one point per instance, and
// stops with the channel.
func TestP2CScoreMetric(t *testing.T) {
	bs, addrs := testbackend.StartN(t, 3)
	reader, mp := newMeterProvider(t)
	svc := &lb.Service{FullName: testbackend.EchoService, Discovery: static.Config{Addresses: addrs}, Balancer: lb.P2CEWMA{}}
	ctx, cancel := context.WithTimeout(context.Background(), resolvertest.Timeout)
	defer cancel()
	c, err := lb.Dial(ctx, svc, lb.WithInsecure(), lb.WithBlock(), lb.WithMetrics(mp))
	if err != nil {
		t.Fatal(err)
	}
	waitCalled(t, ctx, c, bs...)
	scores := collect(t, reader).byLabel("lb.p2c_ewma.score", "lb.instance")
	if len(scores) != 3 {
		t.Fatalf("lb.p2c_ewma.score for %v, want the 3 instances %v", scores, addrs)
	}
	for _, a := range addrs {
		if s, ok := scores[a]; !ok || s <= 0 {
			t.Errorf("score of %s = %v (reported: %v), want above 0 after calls", a, s, ok)
		}
	}
	c.Close()
	if s := collect(t, reader)["lb.p2c_ewma.score"]; len(s) != 0 {
		t.Errorf("scores still reported after Close: %v", s)
	}
}

// TestServerMetrics: a server registered in a real etcd reports itself
// registered once; when its lease is revoked behind its back it is put
// back, and lb.server.registrations says so; Shutdown records its
// propagation wait and ends the reports.
func TestServerMetrics(t *testing.T) {
	es, err := etcdserver.Start(t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(es.Stop)
	reader, mp := newMeterProvider(t)
	svc := &lb.Service{Name: "metered", FullName: "lbtest.Metered", Discovery: etcd.Config{Endpoints: []string{es.Endpoint()}, TTL: 5 * time.Second}}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(lb.ServerMetrics(mp))
	r, err := lb.Register(s, svc, &grpc.ServiceDesc{ServiceName: svc.FullName, HandlerType: (*any)(nil)}, struct{}{},
		lb.WithAdvertiseAddress(lis.Addr().String()), lb.WithMetrics(mp))
	if err != nil {
		t.Fatal(err)
	}
	go r.Serve(lis)
	ctx, cancel := context.WithTimeout(context.Background(), resolvertest.Timeout)
	defer cancel()
	if err := r.WaitRegistered(ctx); err != nil {
		t.Fatal(err)
	}
	this := []attribute.KeyValue{attribute.String("lb.service", "lbtest.Metered"), attribute.String("lb.discovery.backend", "etcd"), attribute.String("lb.instance", lis.Addr().String())}
	got := collect(t, reader)
	got.checkLabels(t, "")
	if v := got.sum("lb.server.registered", this...); v != 1 {
		t.Errorf("lb.server.registered = %v, want 1 (%v)", v, got["lb.server.registered"])
	}
	if v := got.sum("lb.server.registrations", this...); v != 1 {
		t.Errorf("lb.server.registrations = %v, want 1", v)
	}

	// The registry loses the instance: its lease is revoked.
	raw, err := clientv3.New(clientv3.Config{Endpoints: []string{es.Endpoint()}, DialTimeout: resolvertest.Timeout, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	leases, err := raw.Leases(ctx)
	if err != nil || len(leases.Leases) != 1 {
		t.Fatalf("leases: %v, %v; want the instance's one", leases, err)
	}
	if _, err := raw.Revoke(ctx, leases.Leases[0].ID); err != nil {
		t.Fatal(err)
	}
	for {
		changed := r.StatusChanged()
		if collect(t, reader).sum("lb.server.registrations", this...) == 2 {
			break
		}
		select {
		case <-changed:
		case <-ctx.Done():
			t.Fatalf("not registered again after the lease was revoked: %v", r.Status())
		}
	}
	if err := r.WaitRegistered(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	got = collect(t, reader)
	if v := got.sum("lb.server.shutdown.propagation"); v != 1 {
		t.Errorf("lb.server.shutdown.propagation has %v samples, want 1", v)
	}
	if v := got["lb.server.registered"]; len(v) != 0 {
		t.Errorf("lb.server.registered still reported after Shutdown: %v", v)
	}
}

// TestCollectWhileChannelsStart: metrics collected without pause while
// p2c_ewma channels are made and closed. A collection holds the SDK's
// lock while it asks the channels' reporters; a channel's Build registers
// its balancer's reporter (taking that lock) while the watch delivers its
// first state: neither may wait on the other.
func TestCollectWhileChannelsStart(t *testing.T) {
	bs, addrs := testbackend.StartN(t, 3)
	reader, mp := newMeterProvider(t)
	stop := make(chan struct{})
	collected := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				collected <- n
				return
			default:
			}
			var rm metricdata.ResourceMetrics
			if err := reader.Collect(context.Background(), &rm); err != nil {
				t.Error(err)
			}
			n++
		}
	}()
	// Stopped before the test returns, whatever happens.
	defer func() {
		close(stop)
		t.Logf("%d collections while the channels started and closed", <-collected)
	}()
	svc := &lb.Service{FullName: testbackend.EchoService, Discovery: static.Config{Addresses: addrs}, Balancer: lb.P2CEWMA{}}
	for i := range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), resolvertest.Timeout)
		c, err := lb.Dial(ctx, svc, lb.WithInsecure(), lb.WithBlock(), lb.WithMetrics(mp))
		if err != nil {
			cancel()
			t.Fatalf("channel %d: %v", i, err)
		}
		waitCalled(t, ctx, c, bs[i%3])
		c.Close()
		cancel()
	}
}

package lb

import (
	"context"
	"slices"
	"strings"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/stats/opentelemetry"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/locality"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/outlier"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/p2cewma"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/slowstart"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/subset"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
)

// meterName is the instrumentation scope of the metrics this package
// records itself.
const meterName = "github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/lb"

// ChannelMetrics are the names of the metrics grpc-go records for a
// channel through the MetricsRecorder it hands resolvers and balancers:
// the discovery watch's and the policies' own. grpc-go leaves them off;
// WithMetrics turns them on. Give them to opentelemetry.MetricsOptions
// (Metrics: opentelemetry.DefaultMetrics().Add(lb.ChannelMetrics...))
// when you wire grpc-go's OpenTelemetry yourself.
var ChannelMetrics = slices.Concat(discovery.MetricNames, p2cewma.MetricNames, outlier.MetricNames, slowstart.MetricNames, locality.MetricNames, subset.MetricNames)

type metricsOption struct{ mp metric.MeterProvider }

func (m metricsOption) applyDial(o *dialOptions)         { o.metrics = m.mp }
func (m metricsOption) applyRegister(o *registerOptions) { o.metrics = m.mp }

// WithMetrics records metrics on mp (an OpenTelemetry MeterProvider: the
// SDK's, with the exporter of your choice).
//
// Given to Dial (New<Svc>BalancedClient), it turns on grpc-go's call
// metrics (package google.golang.org/grpc/stats/opentelemetry:
// grpc.client.attempt.*, grpc.client.call.duration), grpc-go's and this
// module's channel metrics (ChannelMetrics: the discovery watch's
// lb.discovery.*, the policies' signals such as lb.p2c_ewma.score, the
// outlier ejection's lb.outlier.ejections (by mode), lb.outlier.ejected
// and lb.outlier.ejection_time, and slow start's lb.slow_start.warming
// and lb.slow_start.weight, and zone-aware routing's lb.locality.share
// by level, lb.locality.panic and lb.locality.panics, and subsetting's
// lb.subset.size and lb.subset.instances), and
// the client's own: lb.client.picks (calls sent to each instance),
// lb.client.retries, lb.client.hedges (sent, won) and
// lb.client.retry_budget.exhausted.
//
// Given to Register (Register<Svc>BalancedServer), it records the
// registration: lb.server.registered (1 while the instance is in the
// registry), lb.server.registrations (times it was put there: more than
// one means the registry lost it and it was put back), both by service,
// backend and advertised address (lb.instance), and
// lb.server.shutdown.propagation (how long Shutdown waited until health
// watchers were told). The server's call metrics come from ServerMetrics,
// an option of grpc.NewServer.
//
// No label carries a secret or a value without bound: the service, the
// method, the discovery backend, the channel's target without user info,
// an instance's address (one of the instances the registry holds), and
// kinds from fixed lists.
func WithMetrics(mp metric.MeterProvider) Option { return metricsOption{mp} }

// ServerMetrics returns the grpc.NewServer option that records grpc-go's
// server call metrics (grpc.server.call.*) on mp.
func ServerMetrics(mp metric.MeterProvider) grpc.ServerOption {
	return opentelemetry.ServerOption(opentelemetry.Options{MetricsOptions: opentelemetry.MetricsOptions{MeterProvider: mp}})
}

// metricsDialOptions are the dial options of WithMetrics; the interceptor
// goes after the hedger's, so that each hedge is a call of its own.
func metricsDialOptions(mp metric.MeterProvider, service string) ([]grpc.DialOption, error) {
	cm, err := newCallMetrics(mp, service)
	if err != nil {
		return nil, err
	}
	return []grpc.DialOption{
		opentelemetry.DialOption(opentelemetry.Options{MetricsOptions: opentelemetry.MetricsOptions{
			MeterProvider: mp,
			Metrics:       opentelemetry.DefaultMetrics().Add(ChannelMetrics...),
		}}),
		grpc.WithStatsHandler(cm),
		grpc.WithChainUnaryInterceptor(cm.unary),
		grpc.WithChainStreamInterceptor(cm.stream),
	}, nil
}

// callMetrics counts, for one client, the attempts sent to each instance
// and the attempts that were retries of grpc-go's retry policy. It sees
// each attempt through grpc-go's stats handler, and tells a call's first
// attempt from its retries by a counter its interceptor puts on the call's
// context.
type callMetrics struct {
	service attribute.KeyValue
	picks   metric.Int64Counter
	retries metric.Int64Counter
}

func newCallMetrics(mp metric.MeterProvider, service string) (*callMetrics, error) {
	m := mp.Meter(meterName)
	picks, err := m.Int64Counter("lb.client.picks", metric.WithUnit("{attempt}"),
		metric.WithDescription("Call attempts the client sent to each instance (lb.instance: its address)."))
	if err != nil {
		return nil, err
	}
	retries, err := m.Int64Counter("lb.client.retries", metric.WithUnit("{attempt}"),
		metric.WithDescription("Call attempts that were retries of the method's retry policy (not transparent retries)."))
	if err != nil {
		return nil, err
	}
	return &callMetrics{service: attribute.String("lb.service", service), picks: picks, retries: retries}, nil
}

type attemptsKey struct{}

type callInfo struct {
	method   string
	attempts atomic.Int32
}

func (m *callMetrics) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	return invoker(context.WithValue(ctx, attemptsKey{}, &callInfo{method: method}), method, req, reply, cc, opts...)
}

func (m *callMetrics) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return streamer(context.WithValue(ctx, attemptsKey{}, &callInfo{method: method}), desc, cc, method, opts...)
}

func (m *callMetrics) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (m *callMetrics) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (m *callMetrics) HandleConn(context.Context, stats.ConnStats) {}

func (m *callMetrics) HandleRPC(ctx context.Context, s stats.RPCStats) {
	switch s := s.(type) {
	case *stats.Begin:
		ci, _ := ctx.Value(attemptsKey{}).(*callInfo)
		if !s.Client || s.IsTransparentRetryAttempt || ci == nil {
			return
		}
		if ci.attempts.Add(1) > 1 {
			m.retries.Add(ctx, 1, metric.WithAttributes(m.service, methodAttr(ci.method)))
		}
	case *stats.OutHeader:
		// The header goes out once the attempt has its transport: the
		// instance the balancer picked.
		if s.Client && s.RemoteAddr != nil {
			m.picks.Add(ctx, 1, metric.WithAttributes(m.service, attribute.String("lb.instance", s.RemoteAddr.String())))
		}
	}
}

// hedgeMetrics are the hedger's counters.
type hedgeMetrics struct {
	service         attribute.KeyValue
	hedges          metric.Int64Counter
	budgetExhausted metric.Int64Counter
}

func newHedgeMetrics(mp metric.MeterProvider, service string) (*hedgeMetrics, error) {
	m := mp.Meter(meterName)
	hedges, err := m.Int64Counter("lb.client.hedges", metric.WithUnit("{attempt}"),
		metric.WithDescription("Hedged attempts: lb.hedge=sent for each one sent, lb.hedge=won for each call a hedge answered."))
	if err != nil {
		return nil, err
	}
	exhausted, err := m.Int64Counter("lb.client.retry_budget.exhausted", metric.WithUnit("{attempt}"),
		metric.WithDescription("Hedges not sent because the client's retry budget was spent."))
	if err != nil {
		return nil, err
	}
	return &hedgeMetrics{service: attribute.String("lb.service", service), hedges: hedges, budgetExhausted: exhausted}, nil
}

var (
	hedgeSent = attribute.String("lb.hedge", "sent")
	hedgeWon  = attribute.String("lb.hedge", "won")
)

// sent, won and exhausted count a hedge of method; on a nil *hedgeMetrics
// (no WithMetrics) they do nothing.
func (m *hedgeMetrics) sent(ctx context.Context, method string) {
	if m != nil {
		m.add(ctx, m.hedges, method, hedgeSent)
	}
}

func (m *hedgeMetrics) won(ctx context.Context, method string) {
	if m != nil {
		m.add(ctx, m.hedges, method, hedgeWon)
	}
}

func (m *hedgeMetrics) exhausted(ctx context.Context, method string) {
	if m != nil {
		m.add(ctx, m.budgetExhausted, method)
	}
}

func (m *hedgeMetrics) add(ctx context.Context, c metric.Int64Counter, method string, extra ...attribute.KeyValue) {
	attrs := append([]attribute.KeyValue{m.service, methodAttr(method)}, extra...)
	c.Add(context.WithoutCancel(ctx), 1, metric.WithAttributes(attrs...))
}

// methodAttr is the grpc.method label of a full method name, without its
// leading slash, as grpc-go's own metrics write it.
func methodAttr(method string) attribute.KeyValue {
	return attribute.String("grpc.method", strings.TrimPrefix(method, "/"))
}

// serverMetrics are a server's registration metrics.
type serverMetrics struct {
	registered    metric.Int64ObservableGauge
	registrations metric.Int64ObservableCounter
	propagation   metric.Float64Histogram
	meter         metric.Meter
}

func newServerMetrics(mp metric.MeterProvider) (*serverMetrics, error) {
	m := mp.Meter(meterName)
	registered, err := m.Int64ObservableGauge("lb.server.registered", metric.WithUnit("1"),
		metric.WithDescription("1 while the service's instance is in the registry, else 0."))
	if err != nil {
		return nil, err
	}
	registrations, err := m.Int64ObservableCounter("lb.server.registrations", metric.WithUnit("{registration}"),
		metric.WithDescription("Times the service's instance was put in the registry: more than one means the registry lost it and it was put back."))
	if err != nil {
		return nil, err
	}
	propagation, err := m.Float64Histogram("lb.server.shutdown.propagation", metric.WithUnit("s"),
		metric.WithDescription("How long Shutdown waited, from NOT_SERVING, until every client watching the server's health had been told."),
		metric.WithExplicitBucketBoundaries(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
	if err != nil {
		return nil, err
	}
	return &serverMetrics{registered: registered, registrations: registrations, propagation: propagation, meter: m}, nil
}

// observe reports r's registration whenever the metrics are collected,
// until the returned function is called.
func (m *serverMetrics) observe(r *Registration, backend, addr string) (func(), error) {
	attrs := metric.WithAttributes(attribute.String("lb.service", r.service), attribute.String("lb.discovery.backend", backend), attribute.String("lb.instance", addr))
	reg, err := m.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		var v int64
		if r.Status() == nil {
			v = 1
		}
		o.ObserveInt64(m.registered, v, attrs)
		if c, ok := r.registrar.(discovery.RegistrationCounter); ok {
			o.ObserveInt64(m.registrations, int64(c.Registrations()), attrs)
		}
		return nil
	}, m.registered, m.registrations)
	if err != nil {
		return nil, err
	}
	return func() { _ = reg.Unregister() }, nil
}

package interop_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/grpclog"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/etcdserver"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/resolvertest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/etcd"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/lb"
)

// fatal routes the interop cases' grpclog Fatal (which would end the
// process) to the running test: grpclog calls Fatalln, and t.Fatal ends the
// case's goroutine before grpclog's os.Exit.
var fatal struct {
	mu sync.Mutex
	t  testing.TB
}

func running(t testing.TB) {
	fatal.mu.Lock()
	fatal.t = t
	fatal.mu.Unlock()
	t.Cleanup(func() {
		fatal.mu.Lock()
		fatal.t = nil
		fatal.mu.Unlock()
	})
}

// logger is grpclog's logger in this test: quiet, but Fatal fails the
// running case.
type logger struct{ grpclog.LoggerV2 }

func (logger) Fatal(args ...any)                 { fail(fmt.Sprint(args...)) }
func (logger) Fatalf(format string, args ...any) { fail(fmt.Sprintf(format, args...)) }
func (logger) Fatalln(args ...any)               { fail(fmt.Sprint(args...)) }

func fail(msg string) {
	fatal.mu.Lock()
	t := fatal.t
	fatal.mu.Unlock()
	if t == nil {
		panic("interop: " + msg)
	}
	t.Fatal(msg)
}

func TestMain(m *testing.M) {
	grpclog.SetLoggerV2(logger{grpclog.NewLoggerV2(discard{}, discard{}, discard{})})
	resolvertest.VerifyTestMain(m)
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// service is grpc.testing.TestService, found in etcd.
func service(endpoint string) *lb.Service {
	return &lb.Service{
		Name:      "interop",
		FullName:  "grpc.testing.TestService",
		Discovery: etcd.Config{Endpoints: []string{endpoint}, TTL: 5 * time.Second},
	}
}

// backend is one interop server, registered in etcd.
type backend struct {
	addr  string
	delay atomic.Int64 // ns added to each unary call
}

func startBackends(t *testing.T, svc *lb.Service, n int) []*backend {
	t.Helper()
	var bs []*backend
	for range n {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		b := &backend{addr: lis.Addr().String()}
		s := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if d := b.delay.Load(); d > 0 {
				select { // the backend's own slowness
				case <-time.After(time.Duration(d)):
				case <-ctx.Done():
					return nil, status.FromContextError(ctx.Err()).Err()
				}
			}
			return h(ctx, req)
		}))
		r, err := lb.Register(s, svc, &testgrpc.TestService_ServiceDesc, interop.NewTestServer(), lb.WithAdvertiseAddress(b.addr))
		if err != nil {
			t.Fatal(err)
		}
		go r.Serve(lis)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), resolvertest.Timeout)
			defer cancel()
			if err := r.Shutdown(ctx); err != nil {
				t.Errorf("shutdown %s: %v", b.addr, err)
			}
		})
		ctx, cancel := context.WithTimeout(context.Background(), resolvertest.Timeout)
		err = r.WaitRegistered(ctx)
		cancel()
		if err != nil {
			t.Fatalf("register %s: %v", b.addr, err)
		}
		bs = append(bs, b)
	}
	return bs
}

// setting is one way of dialing the service.
type setting struct {
	name    string
	balance lb.Balancer
	pool    int
	methods []lb.Method
	slow    bool // the first backend answers unary calls 50 ms late
}

var unary = []string{"EmptyCall", "UnaryCall"}

func methods(f func(name string) lb.Method) []lb.Method {
	var ms []lb.Method
	for _, n := range unary {
		ms = append(ms, f(n))
	}
	return ms
}

func settings() []setting {
	retry := methods(func(n string) lb.Method {
		return lb.Method{Name: n, Retry: &lb.Retry{MaxAttempts: 3, InitialBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, BackoffMultiplier: 2, RetryableCodes: []codes.Code{codes.Unavailable}}}
	})
	hedge := methods(func(n string) lb.Method {
		return lb.Method{Name: n, Idempotent: true, Hedging: &lb.Hedging{MaxAttempts: 2, Delay: 10 * time.Millisecond}}
	})
	return []setting{
		{name: "pick_first", balance: lb.PickFirst{}},
		{name: "round_robin", balance: lb.RoundRobin{}},
		{name: "random", balance: lb.Random{}},
		{name: "p2c_ewma", balance: lb.P2CEWMA{}},
		{name: "least_request", balance: lb.LeastRequest{}},
		{name: "consistent_hash", balance: lb.ConsistentHash{}},
		{name: "ring_hash", balance: lb.RingHash{}},
		{name: "weighted_round_robin", balance: lb.WeightedRoundRobin{}},
		{name: "pool", balance: lb.RoundRobin{}, pool: 3},
		{name: "retry", balance: lb.RoundRobin{}, methods: retry},
		{name: "hedging", balance: lb.RoundRobin{}, methods: hedge},
		{name: "hedging_slowed", balance: lb.RoundRobin{}, methods: hedge, slow: true},
		{name: "hedging_slowed_p2c", balance: lb.P2CEWMA{}, methods: hedge, slow: true},
	}
}

// testCase is one of grpc-go's interop client cases, by its interop name.
type testCase struct {
	name  string
	times int // runs of the case in each setting; 0 is 1
	run   func(ctx context.Context, t *testing.T, c *lb.Conn)
}

func cases() []testCase {
	tc := func(c *lb.Conn) testgrpc.TestServiceClient { return testgrpc.NewTestServiceClient(c) }
	simple := func(name string, f func(context.Context, testgrpc.TestServiceClient, ...grpc.CallOption)) testCase {
		return testCase{name: name, run: func(ctx context.Context, _ *testing.T, c *lb.Conn) { f(ctx, tc(c)) }}
	}
	return []testCase{
		simple("empty_unary", interop.DoEmptyUnaryCall),
		simple("large_unary", interop.DoLargeUnaryCall),
		simple("client_streaming", interop.DoClientStreaming),
		simple("server_streaming", interop.DoServerStreaming),
		simple("ping_pong", interop.DoPingPong),
		simple("empty_stream", interop.DoEmptyStream),
		simple("timeout_on_sleeping_server", interop.DoTimeoutOnSleepingServer),
		simple("cancel_after_begin", interop.DoCancelAfterBegin),
		simple("cancel_after_first_response", interop.DoCancelAfterFirstResponse),
		{name: "custom_metadata", times: 20, run: func(ctx context.Context, _ *testing.T, c *lb.Conn) { interop.DoCustomMetadata(ctx, tc(c)) }},
		simple("status_code_and_message", interop.DoStatusCodeAndMessage),
		simple("special_status_message", interop.DoSpecialStatusMessage),
		{name: "unimplemented_service", run: func(ctx context.Context, _ *testing.T, c *lb.Conn) {
			interop.DoUnimplementedService(ctx, testgrpc.NewUnimplementedServiceClient(c))
		}},
		{name: "unimplemented_method", run: func(ctx context.Context, _ *testing.T, c *lb.Conn) { interop.DoUnimplementedMethod(ctx, c.Conn()) }},
		{name: "rpc_soak", run: func(ctx context.Context, t *testing.T, c *lb.Conn) {
			interop.DoSoakTest(ctx, interop.SoakTestConfig{
				RequestSize:                      271828,
				ResponseSize:                     314159,
				PerIterationMaxAcceptableLatency: resolvertest.Timeout / 4,
				OverallTimeout:                   resolvertest.Timeout,
				ServerAddr:                       "interop",
				NumWorkers:                       2,
				Iterations:                       10,
				MaxFailures:                      0,
				ChannelForTest:                   func() (*grpc.ClientConn, func()) { return c.Conn(), func() {} },
			})
		}},
	}
}

// TestInterop runs each interop case in each setting against three
// servers registered in etcd, custom_metadata 20 times; a failed case
// fails its subtest with grpc-go's message. With -v, the last lines
// give the table of cases and settings.
func TestInterop(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the interop suite takes tens of seconds")
	}
	es, err := etcdserver.Start(t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(es.Stop)
	svc := service(es.Endpoint())
	bs := startBackends(t, svc, 3)

	results := map[string]map[string]string{} // case -> setting -> result
	for _, st := range settings() {
		t.Run(st.name, func(t *testing.T) {
			if st.slow {
				bs[0].delay.Store(int64(50 * time.Millisecond))
				t.Cleanup(func() { bs[0].delay.Store(0) })
			}
			ctx, cancel := context.WithTimeout(context.Background(), 4*resolvertest.Timeout)
			defer cancel()
			s := *svc
			s.Balancer, s.PoolSize, s.Methods = st.balance, st.pool, st.methods
			c, err := lb.Dial(ctx, &s, lb.WithInsecure(), lb.WithBlock())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			for _, tc := range cases() {
				ok := t.Run(tc.name, func(t *testing.T) {
					running(t)
					for range max(1, tc.times) {
						tc.run(ctx, t, c)
					}
				})
				if results[tc.name] == nil {
					results[tc.name] = map[string]string{}
				}
				results[tc.name][st.name] = map[bool]string{true: fmt.Sprintf("pass×%d", max(1, tc.times)), false: "FAIL"}[ok]
			}
			if st.slow {
				t.Logf("hedges: %+v", c.HedgeStats())
			}
		})
	}
	var b strings.Builder
	b.WriteString("| case |")
	for _, st := range settings() {
		b.WriteString(" " + st.name + " |")
	}
	b.WriteString("\n|---|" + strings.Repeat("---|", len(settings())) + "\n")
	for _, tc := range cases() {
		b.WriteString("| " + tc.name + " |")
		for _, st := range settings() {
			b.WriteString(" " + results[tc.name][st.name] + " |")
		}
		b.WriteString("\n")
	}
	t.Logf("interop cases × settings:\n%s", b.String())
}

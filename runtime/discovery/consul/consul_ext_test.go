package consul_test

// Tests against a real Consul agent (consul agent -dev on free loopback
// ports, internal/consulagent), through the lb core exactly as the
// generated code calls it.

import (
	"context"
	"errors"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/grpclog"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/resolver"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/cctest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/consulagent"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/load"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/logtest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/resolvertest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/secrettest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/consul"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/dns"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/lb"
)

// testLogs holds every log line of the package's tests: the logger is set
// once, before any test runs, so that no goroutine of one test races a
// later change of it.
var testLogs = &logtest.Buffer{}

// scan checks every log line of the package's tests, the fault tests
// (agents stopped, ACLs, TLS) among them, for the sentinel secrets below.
var scan = &secrettest.Scanner{}

// The sentinel tokens of the tests: no log line may show them.
var (
	sentinelToken = secrettest.Secret("5e9e1f3a-sentinel-management-token")
	wrongToken    = secrettest.Secret("0bad0bad-sentinel-wrong-token")
)

func TestMain(m *testing.M) {
	w := io.MultiWriter(testLogs, scan)
	grpclog.SetLoggerV2(grpclog.NewLoggerV2WithVerbosity(w, io.Discard, io.Discard, 99)) // the first writer gets every severity
	resolvertest.VerifyTestMainScanning(m, scan)
}

const timeout = resolvertest.Timeout

func startAgent(t testing.TB, hcl string) *consulagent.Agent {
	t.Helper()
	a, err := consulagent.Start(t.TempDir(), hcl)
	if err == consulagent.ErrNoBinary && os.Getenv("LB_REQUIRE_TOOLS") == "" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Stop)
	return a
}

// echoDesc is a service with no methods: the backends are told apart by
// the health calls the client makes, which an interceptor counts.
var echoDesc = grpc.ServiceDesc{ServiceName: "test.Echo", HandlerType: (*any)(nil)}

// backend is a gRPC server registered in Consul through lb.Register.
type backend struct {
	addr  string
	calls atomic.Int64
	reg   *lb.Registration
	srv   *grpc.Server
}

// testService is the lb.Service the generated code would hold for a
// service annotated with consul discovery.
func testService(agent string, cfg consul.Config) *lb.Service {
	cfg.Address = agent
	if cfg.CheckInterval == 0 {
		cfg.CheckInterval = 200 * time.Millisecond
	}
	return &lb.Service{Name: "echo", FullName: "test.Echo", Discovery: cfg}
}

func startBackend(t testing.TB, svc *lb.Service) *backend {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{addr: lis.Addr().String()}
	b.srv = grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if r, ok := req.(*healthpb.HealthCheckRequest); ok && r.GetService() == "count" {
			b.calls.Add(1)
			return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
		}
		return h(ctx, req)
	}))
	b.reg, err = lb.Register(b.srv, svc, &echoDesc, struct{}{}, lb.WithAdvertiseAddress(b.addr))
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	go b.srv.Serve(lis)
	t.Cleanup(func() { b.reg.Shutdown(context.Background()) })
	return b
}

// call makes one call that a backend counts.
func call(ctx context.Context, c *lb.Conn) error {
	return c.Invoke(ctx, "/grpc.health.v1.Health/Check", &healthpb.HealthCheckRequest{Service: "count"}, &healthpb.HealthCheckResponse{})
}

func dial(t testing.TB, svc *lb.Service, opts ...lb.DialOption) *lb.Conn {
	t.Helper()
	c, err := lb.Dial(context.Background(), svc, append([]lb.DialOption{lb.WithInsecure()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// passing returns the addresses Consul reports passing for service.
func passing(t testing.TB, agent, service string) []string {
	t.Helper()
	c, err := api.NewClient(&api.Config{Address: agent, Token: os.Getenv("CONSUL_HTTP_TOKEN")})
	if err != nil {
		t.Fatal(err)
	}
	entries, _, err := c.Health().Service(service, "", true, nil)
	if err != nil {
		t.Fatalf("health query: %v", err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, net.JoinHostPort(e.Service.Address, strconv.Itoa(e.Service.Port)))
	}
	return out
}

// waitCalls calls until every backend in want has answered and, if not
// nil, none in notWant has answered during the last 50 calls.
func waitCalls(t testing.TB, c *lb.Conn, want []*backend, notWant []*backend) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for clean := 0; ; {
		before := map[*backend]int64{}
		for _, b := range append(want, notWant...) {
			before[b] = b.calls.Load()
		}
		for range 50 {
			if err := call(ctx, c); err != nil {
				t.Fatalf("call: %v", err)
			}
		}
		ok := true
		for _, b := range want {
			ok = ok && b.calls.Load() > before[b]
		}
		for _, b := range notWant {
			ok = ok && b.calls.Load() == before[b]
		}
		if ok {
			clean++
			if clean == 2 {
				return
			}
		} else {
			clean = 0
		}
	}
}

// TestRegisteredBackendsGetCalls: three servers registered through the lb
// core; their gRPC checks turn passing by themselves (Consul calls our
// health service); the client spreads calls; a server set NOT_SERVING is
// removed by Consul; a deregistered one stops getting calls.
func TestRegisteredBackendsGetCalls(t *testing.T) {
	a := startAgent(t, "")
	svc := testService(a.HTTPAddr(), consul.Config{})
	bs := []*backend{startBackend(t, svc), startBackend(t, svc), startBackend(t, svc)}
	cc := build(t, "consul://"+a.HTTPAddr()+"/echo")
	cc.WaitAddrs(t, sortedAddrs(bs)...) // passing-only: the checks passed

	c := dial(t, svc)
	waitCalls(t, c, bs, nil)

	bs[0].reg.Health().SetServingStatus("test.Echo", healthpb.HealthCheckResponse_NOT_SERVING)
	cc.WaitAddrs(t, sortedAddrs(bs[1:])...)
	if got := passing(t, a.HTTPAddr(), "echo"); len(got) != 2 {
		t.Errorf("Consul reports %v passing, want the 2 still SERVING", got)
	}
	waitCalls(t, c, bs[1:], bs[:1])

	if err := bs[1].reg.Deregister(context.Background()); err != nil {
		t.Fatal(err)
	}
	cc.WaitAddrs(t, bs[2].addr)
	waitCalls(t, c, bs[2:], bs[:2])
}

func sortedAddrs(bs []*backend) []string {
	var out []string
	for _, b := range bs {
		out = append(out, b.addr)
	}
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// startLoad calls c without pause from two goroutines until the test ends
// or Stop.
func startLoad(t testing.TB, c *lb.Conn) *load.Load {
	l := load.Start(2, func(ctx context.Context) error { return call(ctx, c) })
	t.Cleanup(func() { l.Stop() })
	return l
}

// TestAgentRestart stops the agent for 10 s under load and starts it again
// (a dev agent forgets every registration): no call fails, the resolver
// recovers, and the registrars register again by themselves, with the
// registration times of their first registration.
func TestAgentRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("10 s outage")
	}
	a := startAgent(t, "")
	svc := testService(a.HTTPAddr(), consul.Config{})
	bs := []*backend{startBackend(t, svc), startBackend(t, svc), startBackend(t, svc)}
	cc := build(t, "consul://"+a.HTTPAddr()+"/echo")
	st := cc.WaitAddrs(t, sortedAddrs(bs)...)
	for _, ep := range st.Endpoints {
		if md, _ := discovery.MetadataOf(ep); md.RegisteredAt.IsZero() || time.Since(md.RegisteredAt) > time.Minute {
			t.Errorf("%s registered at %v, want a recent time", ep.Addresses[0].Addr, md.RegisteredAt)
		}
	}
	c := dial(t, svc)
	waitCalls(t, c, bs, nil)
	before := registeredAts(t, a.HTTPAddr())

	l := startLoad(t, c)
	a.Stop()
	time.Sleep(10 * time.Second) // the outage itself
	if err := a.Restart(); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	// The agent lost the registrations; the registrars put them back and
	// the checks pass again.
	for _, b := range bs {
		waitRegistered(t, b.reg)
	}
	waitPassing(t, a.HTTPAddr(), 3)
	recovered := time.Since(restarted)
	if after := registeredAts(t, a.HTTPAddr()); !maps.Equal(after, before) || len(after) != 3 {
		t.Errorf("registration times after the restart %v, want those before it %v", after, before)
	}
	calls, failed, _ := l.Stop()
	t.Logf("agent down 10s: %d calls, %d failed; registrations back and passing %v after the restart", calls, failed, recovered)
	if failed != 0 {
		t.Errorf("%d of %d calls failed, want 0", failed, calls)
	}
	for i, st := range cc.States() {
		if len(st.Endpoints) == 0 {
			t.Errorf("state %d is empty", i)
		}
	}
	waitCalls(t, c, bs, nil)
}

// registeredAts returns the Meta registered_at of each instance of echo,
// by service ID.
func registeredAts(t testing.TB, agent string) map[string]string {
	t.Helper()
	c, err := api.NewClient(&api.Config{Address: agent, Token: os.Getenv("CONSUL_HTTP_TOKEN")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	entries, _, err := c.Health().Service("echo", "", false, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range entries {
		out[e.Service.ID] = e.Service.Meta["registered_at"]
	}
	return out
}

// waitPassing polls Consul (another process: there is no event to wait on)
// until n instances of echo pass.
func waitPassing(t testing.TB, agent string, n int) {
	t.Helper()
	c, err := api.NewClient(&api.Config{Address: agent, Token: os.Getenv("CONSUL_HTTP_TOKEN")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// Blocking queries: each returns when the answer changes.
	for index := uint64(0); ; {
		entries, meta, err := c.Health().Service("echo", "", true, (&api.QueryOptions{WaitIndex: index, WaitTime: timeout}).WithContext(ctx))
		if err == nil && len(entries) == n {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("%d instances passing (%v), want %d", len(entries), err, n)
		}
		if err == nil {
			index = max(meta.LastIndex, 1)
			continue
		}
		select {
		case <-time.After(50 * time.Millisecond): // the agent failed: not at once again
		case <-ctx.Done():
		}
	}
}

func waitRegistered(t testing.TB, reg *lb.Registration) {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		changed := reg.StatusChanged()
		if reg.Status() == nil {
			return
		}
		select {
		case <-changed:
		case <-timer.C:
			t.Fatalf("not registered again: %v", reg.Status())
		}
	}
}

// TestFlappingCheck flips a fourth instance's TTL check every 500 ms for
// 10 s: the resolver coalesces the flips into fewer updates, and calls to
// the three stable backends never fail.
func TestFlappingCheck(t *testing.T) {
	if testing.Short() {
		t.Skip("10 s of flapping")
	}
	a := startAgent(t, "")
	svc := testService(a.HTTPAddr(), consul.Config{})
	bs := []*backend{startBackend(t, svc), startBackend(t, svc), startBackend(t, svc)}
	client, err := api.NewClient(&api.Config{Address: a.HTTPAddr()})
	if err != nil {
		t.Fatal(err)
	}
	// The flapper: registered by hand with a TTL check the test drives; it
	// does not serve, so a call sent to it would fail.
	flapper := &api.AgentServiceRegistration{ID: "flapper", Name: "echo", Address: "127.0.0.1", Port: 1,
		Check: &api.AgentServiceCheck{CheckID: "flapper:ttl", TTL: "1h", Status: api.HealthPassing}}
	if err := client.Agent().ServiceRegister(flapper); err != nil {
		t.Fatal(err)
	}
	waitPassing(t, a.HTTPAddr(), 4)
	rb, rec := cctest.Wrap(consul.NewBuilder())
	c := dial(t, svc, lb.WithDialOptions(grpc.WithResolvers(rb)))
	waitCalls(t, c, bs, nil)

	l := startLoad(t, c)
	before := len(rec.States())
	const flips = 20
	tick := time.NewTicker(500 * time.Millisecond)
	for i := range flips {
		<-tick.C
		status := api.HealthCritical
		if i%2 == 1 {
			status = api.HealthPassing
		}
		if err := client.Agent().UpdateTTL("flapper:ttl", "", status); err != nil {
			t.Fatal(err)
		}
	}
	tick.Stop()
	calls, failed, _ := l.Stop()
	updates := len(rec.States()) - before
	t.Logf("%d flips in 10s: %d resolver updates; %d calls, %d failed", flips, updates, calls, failed)
	if updates >= flips {
		t.Errorf("%d updates for %d flips, want them coalesced", updates, flips)
	}
	// The flapper refuses connections, so round_robin never picks it:
	// every call goes to a stable backend, and none may fail.
	if failed != 0 {
		t.Errorf("%d of %d calls failed, want 0", failed, calls)
	}
}

// TestACLs runs an agent with default-deny ACLs: with the management token
// (from CONSUL_HTTP_TOKEN) the registrar and resolver work; without it the
// resolver reports the ACL filter instead of an empty list; a wrong token
// is refused. The tokens appear in no log line and no error.
func TestACLs(t *testing.T) {
	sentinel, wrong := sentinelToken, wrongToken
	a := startAgent(t, `acl { enabled = true default_policy = "deny" tokens { initial_management = "`+sentinel+`" } }`)
	logs := testLogs
	var errs []error

	t.Setenv("CONSUL_HTTP_TOKEN", sentinel)
	svc := testService(a.HTTPAddr(), consul.Config{})
	b := startBackend(t, svc)
	waitPassing(t, a.HTTPAddr(), 1)
	cc := build(t, "consul://"+a.HTTPAddr()+"/echo")
	cc.WaitAddrs(t, b.addr)

	// A token that may read another service only: Consul filters echo out
	// and says so.
	mgmt, err := api.NewClient(&api.Config{Address: a.HTTPAddr(), Token: sentinel})
	if err != nil {
		t.Fatal(err)
	}
	policy, _, err := mgmt.ACL().PolicyCreate(&api.ACLPolicy{Name: "other-only", Rules: `service "other" { policy = "read" }  node_prefix "" { policy = "read" }`}, nil)
	if err != nil {
		t.Fatal(err)
	}
	limited, _, err := mgmt.ACL().TokenCreate(&api.ACLToken{Policies: []*api.ACLTokenPolicyLink{{ID: policy.ID}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	secrettest.Secret(limited.SecretID)
	filtered := build(t, "consul://"+a.HTTPAddr()+"/echo", consul.WithToken(limited.SecretID))
	filtered.Wait(t, "the ACL filter reported", func(_ []resolver.State, e []error) bool {
		return len(e) > 0 && errors.Is(e[0], consul.ErrFilteredByACLs)
	})
	errs = append(errs, filtered.Errors()...)

	// No token at all: Consul filters silently; the error says why.
	t.Setenv("CONSUL_HTTP_TOKEN", "")
	anon := build(t, "consul://"+a.HTTPAddr()+"/echo")
	anon.Wait(t, "no instances, with the ACL hint", func(_ []resolver.State, e []error) bool {
		return len(e) > 0 && errors.Is(e[0], consul.ErrNoInstances) && strings.Contains(e[0].Error(), "no ACL token")
	})
	errs = append(errs, anon.Errors()...)

	bad := build(t, "consul://"+a.HTTPAddr()+"/echo", consul.WithToken(wrong))
	bad.Wait(t, "the wrong token refused", func(_ []resolver.State, e []error) bool {
		return len(e) > 0 && strings.Contains(e[0].Error(), "403")
	})
	errs = append(errs, bad.Errors()...)
	t.Setenv("CONSUL_HTTP_TOKEN", wrong)
	reg, err := (consul.Config{Address: a.HTTPAddr()}).NewRegistrar(discovery.Instance{Service: "echo", ID: "x", Address: "127.0.0.1:9"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Register(context.Background()); err == nil {
		t.Error("Register with a wrong token succeeded")
	} else {
		errs = append(errs, err)
	}
	reg.Deregister(context.Background())
	errs = append(errs, cc.Errors()...)

	for _, secret := range []string{sentinel, wrong, limited.SecretID} {
		for _, err := range errs {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error shows a token: %v", err)
			}
		}
		if strings.Contains(logs.String(), secret) {
			t.Errorf("logs show a token:\n%s", logs.String())
		}
	}
	if len(errs) < 4 {
		t.Errorf("only %d errors checked: %v", len(errs), errs)
	}
}

// TestOpenCloseCycles builds and closes 200 resolvers against the agent:
// goleak (TestMain) finds nothing left.
func TestOpenCloseCycles(t *testing.T) {
	a := startAgent(t, "")
	client, err := api.NewClient(&api.Config{Address: a.HTTPAddr()})
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "c1", Name: "cycle", Address: "10.0.0.1", Port: 1}); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse("consul://" + a.HTTPAddr() + "/cycle")
	for range 200 {
		cc := cctest.New()
		r, err := consul.NewBuilder().Build(resolver.Target{URL: *u}, cc, resolver.BuildOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cc.WaitAddrs(t, "10.0.0.1:1")
		r.Close()
		cc.Closed()
	}
}

// TestConsulDNS resolves <service>.service.consul SRV records through the
// agent's DNS interface with the lbdns resolver: ports from the records.
func TestConsulDNS(t *testing.T) {
	a := startAgent(t, "")
	client, err := api.NewClient(&api.Config{Address: a.HTTPAddr()})
	if err != nil {
		t.Fatal(err)
	}
	for i, port := range []int{7001, 7002} {
		if err := client.Agent().ServiceRegister(&api.AgentServiceRegistration{
			ID: "dns" + strconv.Itoa(i), Name: "dnsvc", Address: "127.0.0.1", Port: port,
		}); err != nil {
			t.Fatal(err)
		}
	}
	target, err := (dns.Config{Host: "dnsvc.service.consul", SRV: true, Server: a.DNSAddr()}).Target("dnsvc", "")
	if err != nil {
		t.Fatal(err)
	}
	cctest.Build(t, dns.NewBuilder(), target).WaitAddrs(t, "127.0.0.1:7001", "127.0.0.1:7002")
}

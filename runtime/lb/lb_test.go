package lb

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/roundrobin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/resolver/manual"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/resolvertest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/testbackend"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/testpki"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/hedge"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/outlier"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/pool"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/slowstart"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/dns"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/static"
)

func TestMain(m *testing.M) { resolvertest.VerifyTestMain(m) }

func TestServiceConfigJSON(t *testing.T) {
	svc := &Service{
		FullName: "pkg.Svc",
		Balancer: RingHash{MinRingSize: 2048},
		Methods: []Method{
			{Name: "Get", Timeout: 1500 * time.Millisecond, Retry: &Retry{MaxAttempts: 3, InitialBackoff: 100 * time.Millisecond, MaxBackoff: time.Second, BackoffMultiplier: 2, RetryableCodes: []codes.Code{codes.Unavailable}}},
			{Name: "Keyed", HashKey: "id"}, // nothing for the service config
			{Name: "Wait", WaitForReady: true},
		},
		RetryBudget: &RetryBudget{MaxTokens: 20},
	}
	got, err := ServiceConfig(svc)
	if err != nil {
		t.Fatal(err)
	}
	want := `{
		"loadBalancingConfig": [{"ring_hash_experimental": {"minRingSize": 2048, "requestHashHeader": "lb-hash-key"}}],
		"healthCheckConfig": {"serviceName": "pkg.Svc"},
		"retryThrottling": {"maxTokens": 20, "tokenRatio": 0.1},
		"methodConfig": [{
			"name": [{"service": "pkg.Svc", "method": "Get"}],
			"timeout": "1.500000000s",
			"retryPolicy": {"maxAttempts": 3, "initialBackoff": "0.100000000s", "maxBackoff": "1.000000000s",
				"backoffMultiplier": 2, "retryableStatusCodes": [14]}
		}, {
			"name": [{"service": "pkg.Svc", "method": "Wait"}],
			"waitForReady": true
		}]
	}`
	var gotV, wantV any
	if err := json.Unmarshal([]byte(got), &gotV); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(want), &wantV); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantV, gotV); diff != "" {
		t.Errorf("ServiceConfig (-want +got):\n%s", diff)
	}
}

// TestServiceConfigAcceptedByGRPC checks every policy's config against
// gRPC's own parser: an invalid default service config fails NewClient.
func TestServiceConfigAcceptedByGRPC(t *testing.T) {
	retry := &Retry{MaxAttempts: 5, InitialBackoff: time.Millisecond, MaxBackoff: time.Minute, BackoffMultiplier: 1.5, RetryableCodes: []codes.Code{codes.Unavailable, codes.ResourceExhausted}}
	for _, b := range []Balancer{
		nil, PickFirst{}, RoundRobin{}, Random{}, P2CEWMA{}, P2CEWMA{Decay: 1500 * time.Millisecond}, LeastRequest{}, LeastRequest{ChoiceCount: 4},
		RingHash{}, RingHash{MinRingSize: 10, MaxRingSize: 20},
		WeightedRoundRobin{}, ORCAWeightedRoundRobin{}, ORCAWeightedRoundRobin{EnableOOBLoadReport: true, OOBReportingPeriod: time.Second, BlackoutPeriod: 2 * time.Second, WeightExpirationPeriod: time.Minute, WeightUpdatePeriod: 100 * time.Millisecond, ErrorUtilizationPenalty: 1.5},
	} {
		svc := &Service{FullName: "pkg.Svc", Balancer: b, Methods: []Method{{Name: "M", Timeout: time.Second, Retry: retry}}}
		sc, err := ServiceConfig(svc)
		if err != nil {
			t.Errorf("ServiceConfig(%T) = %v", b, err)
			continue
		}
		cc, err := grpc.NewClient("passthrough:///127.0.0.1:1", grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDefaultServiceConfig(sc))
		if err != nil {
			t.Errorf("gRPC rejects the service config of %#v: %v\n%s", b, err, sc)
			continue
		}
		cc.Close()
	}
}

type unknownBalancer struct{}

func (unknownBalancer) BalancerName() string { return "no_such_policy" }
func (unknownBalancer) BalancerConfig() any  { return struct{}{} }

func TestServiceConfigUnknownPolicy(t *testing.T) {
	_, err := ServiceConfig(&Service{FullName: "pkg.Svc", Balancer: unknownBalancer{}})
	if err == nil || !strings.Contains(err.Error(), `"no_such_policy"`) {
		t.Errorf("ServiceConfig(unknown policy) = %v, want an error naming it", err)
	}
}

func TestDialErrors(t *testing.T) {
	svc := &Service{FullName: "pkg.Svc", Discovery: static.Config{Addresses: []string{"127.0.0.1:1"}}}
	ctx := context.Background()
	if _, err := Dial(ctx, svc); !errors.Is(err, ErrNoCredentials) || strings.Contains(err.Error(), "WithDialOptions") {
		t.Errorf("Dial without credentials = %v, want ErrNoCredentials", err)
	}
	// Credentials among the gRPC dial options are not Dial's: the error
	// says where they go.
	for _, opt := range []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{})),
	} {
		_, err := Dial(ctx, svc, WithDialOptions(grpc.WithUserAgent("x"), opt))
		if !errors.Is(err, ErrNoCredentials) || !strings.Contains(err.Error(), "not lb.WithDialOptions") {
			t.Errorf("Dial with credentials in WithDialOptions = %v, want ErrNoCredentials saying they go through lb.WithTransportCredentials or lb.WithInsecure, not lb.WithDialOptions", err)
		}
	}
	if _, err := Dial(ctx, svc, WithDialOptions(grpc.WithUserAgent("x"))); !errors.Is(err, ErrNoCredentials) || strings.Contains(err.Error(), "WithDialOptions") {
		t.Errorf("Dial with dial options but no credentials = %v, want ErrNoCredentials alone", err)
	}
	if _, err := Dial(ctx, svc, WithInsecure(), WithTransportCredentials(insecure.NewCredentials())); err == nil {
		t.Error("Dial with both credentials succeeded")
	}
	if _, err := Dial(ctx, &Service{FullName: "pkg.Svc"}, WithInsecure()); err == nil || !strings.Contains(err.Error(), "pkg.Svc") {
		t.Errorf("Dial without discovery = %v, want an error naming the service", err)
	}
	if _, err := Dial(ctx, svc, WithInsecure(), WithRegistryAddress("127.0.0.1:0")); err == nil || !strings.Contains(err.Error(), `port "0"`) {
		t.Errorf("Dial with a bad registry address = %v, want an error naming the port", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	// Port 1 on loopback refuses: WithBlock gives up when ctx ends.
	if _, err := Dial(wctx, svc, WithInsecure(), WithBlock()); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Dial(WithBlock) to a closed port = %v, want DeadlineExceeded", err)
	}
}

// TestDialTargetScheme: a target naming a scheme no resolver serves, in
// grpc-go's registry or given with grpc.WithResolvers, fails at Dial and
// names the scheme; a target without a scheme keeps grpc-go's default.
func TestDialTargetScheme(t *testing.T) {
	own := manual.NewBuilderWithScheme("lbown")
	for _, tc := range []struct {
		target  string
		opts    []grpc.DialOption
		wantErr string // "" for none
	}{
		{target: "nope:///x:1", wantErr: `scheme "nope"`},
		{target: "Nope://authority/x:1", wantErr: `scheme "nope"`},
		{target: "nope:/x:1", wantErr: `scheme "nope"`},
		{target: "lbown:///x:1", wantErr: `scheme "lbown"`}, // not given
		{target: "lbown:///x:1", opts: []grpc.DialOption{grpc.WithResolvers(own)}},
		{target: "static:///127.0.0.1:1"},
		{target: "lbdns:///svc.test?record=srv"},
		{target: "passthrough:///127.0.0.1:1"},
		{target: "dns:///localhost:1"},
		// No scheme: grpc-go's default (dns).
		{target: "127.0.0.1:1"},
		{target: "localhost:1"},
		{target: "[::1]:1"},
	} {
		svc := &Service{FullName: "pkg.Svc"}
		c, err := Dial(context.Background(), svc, WithInsecure(), WithTarget(tc.target), WithDialOptions(tc.opts...))
		if c != nil {
			c.Close()
		}
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("Dial(WithTarget(%q), %d dial options) = %v, want an error containing %q", tc.target, len(tc.opts), err, tc.wantErr)
		}
	}
}

// fakeRegistry is a backend with a registry, for the lb side of
// registration; real backends are tested against real registries.
type fakeRegistry struct {
	static.Config
	mu           sync.Mutex
	instances    map[string]discovery.Instance // guarded by mu
	registry     string                        // guarded by mu
	registerErr  error
	deregistered chan string
}

func (f *fakeRegistry) NewRegistrar(inst discovery.Instance, registry string) (discovery.Registrar, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.registry = registry
	return &fakeRegistrar{f: f, inst: inst}, nil
}

type fakeRegistrar struct {
	f    *fakeRegistry
	inst discovery.Instance
}

func (r *fakeRegistrar) Register(context.Context) error {
	r.f.mu.Lock()
	defer r.f.mu.Unlock()
	r.f.instances[r.inst.ID] = r.inst
	return r.f.registerErr
}

func (r *fakeRegistrar) Deregister(context.Context) error {
	r.f.mu.Lock()
	defer r.f.mu.Unlock()
	delete(r.f.instances, r.inst.ID)
	r.f.deregistered <- r.inst.ID
	return nil
}

var testDesc = grpc.ServiceDesc{ServiceName: "pkg.Svc", HandlerType: (*any)(nil)}

// waitStatus waits until r's Status satisfies ok.
func waitStatus(t *testing.T, r *Registration, ok func(error) bool) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), resolvertest.Timeout)
	defer cancel()
	for {
		ch := r.StatusChanged()
		if err := r.Status(); ok(err) {
			return err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatalf("Status is still %v", r.Status())
		}
	}
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return lis
}

// TestRegisterInRegistry: the instance goes in the registry once the
// server serves, not before; Shutdown takes it out.
func TestRegisterInRegistry(t *testing.T) {
	reg := &fakeRegistry{instances: map[string]discovery.Instance{}, deregistered: make(chan string, 1)}
	svc := &Service{Name: "svc", FullName: "pkg.Svc", Discovery: reg}
	s := grpc.NewServer()
	lis := listen(t)
	addr := lis.Addr().String()
	r, err := Register(s, svc, &testDesc, struct{}{}, WithAdvertiseAddress(addr),
		WithRegistryAddress("registry:1"), WithMetadata(discovery.Metadata{Zone: "z1"}))
	if err != nil {
		t.Fatalf("Register = %v", err)
	}
	if !r.InRegistry() {
		t.Error("InRegistry() = false")
	}
	if err := r.Status(); !errors.Is(err, ErrNotServing) {
		t.Errorf("Status before Serve = %v, want ErrNotServing", err)
	}
	reg.mu.Lock()
	if n := len(reg.instances); n != 0 {
		t.Errorf("%d instances registered before the server serves", n)
	}
	reg.mu.Unlock()
	served := make(chan error, 1)
	go func() { served <- r.Serve(lis) }()
	waitStatus(t, r, func(err error) bool { return err == nil })
	id := defaultInstanceID("svc", addr)
	want := discovery.Instance{Service: "svc", ID: id, Address: addr, HealthService: "pkg.Svc", Metadata: discovery.Metadata{Zone: "z1"}}
	reg.mu.Lock()
	if diff := cmp.Diff(map[string]discovery.Instance{want.ID: want}, reg.instances); diff != "" {
		t.Errorf("registered instances (-want +got):\n%s", diff)
	}
	if reg.registry != "registry:1" {
		t.Errorf("registrar got registry %q, want the override", reg.registry)
	}
	reg.mu.Unlock()
	if err := r.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := <-reg.deregistered; got != want.ID {
		t.Errorf("deregistered %q, want %q", got, want.ID)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve = %v after Shutdown", err)
	}
	// Idempotent: again, and Deregister after it, are fine.
	if err := r.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown = %v", err)
	}
	if err := r.Deregister(context.Background()); err != nil {
		t.Errorf("Deregister after Shutdown = %v", err)
	}
}

// TestRegisterFailureStillServes: a registry that refuses is no error of
// Register (nothing to leak); Status says it, and the server serves.
func TestRegisterFailureStillServes(t *testing.T) {
	reg := &fakeRegistry{instances: map[string]discovery.Instance{}, registerErr: errors.New("registry down"), deregistered: make(chan string, 1)}
	s := grpc.NewServer()
	lis := listen(t)
	r, err := Register(s, &Service{Name: "svc", FullName: "pkg.Svc", Discovery: reg}, &testDesc, struct{}{}, WithAdvertiseAddress(lis.Addr().String()))
	if err != nil {
		t.Fatalf("Register = %v; a registry failure is reported by Status", err)
	}
	go s.Serve(lis) // not through r.Serve: the probe of the address sees it
	err = waitStatus(t, r, func(err error) bool { return err != nil && !errors.Is(err, ErrNotServing) })
	if !strings.Contains(err.Error(), "registry down") {
		t.Errorf("Status = %v, want the registry's error", err)
	}
	if _, ok := s.GetServiceInfo()["pkg.Svc"]; !ok {
		t.Error("service not registered on the server after a registry failure")
	}
	r.Shutdown(context.Background())
}

// TestAnswers: the probe tells a served address from a listener nobody
// serves yet, plaintext and TLS.
func TestAnswers(t *testing.T) {
	idle := listen(t)
	defer idle.Close()
	if answers(idle.Addr().String(), nil) {
		t.Error("a listener nobody serves answers")
	}
	plain := grpc.NewServer()
	lis := listen(t)
	go plain.Serve(lis)
	defer plain.Stop()
	if !answers(lis.Addr().String(), nil) {
		t.Error("a plaintext gRPC server does not answer")
	}
	ca := testpki.NewCA(t, "probe")
	cert, key := ca.Issue(t, "server", "127.0.0.1")
	creds, err := credentials.NewServerTLSFromFile(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	secure := grpc.NewServer(grpc.Creds(creds))
	tlis := listen(t)
	go secure.Serve(tlis)
	defer secure.Stop()
	if !answers(tlis.Addr().String(), nil) {
		t.Error("a TLS gRPC server does not answer")
	}
}

func TestRegisterBadAdvertiseAddress(t *testing.T) {
	s := grpc.NewServer()
	_, err := Register(s, &Service{FullName: "pkg.Svc"}, &testDesc, struct{}{}, WithAdvertiseAddress("10.0.0.5"))
	if err == nil || !strings.Contains(err.Error(), `"10.0.0.5"`) {
		t.Errorf("Register(bad advertise) = %v, want an error naming it", err)
	}
	if len(s.GetServiceInfo()) != 0 {
		t.Errorf("services registered despite the error: %v", s.GetServiceInfo())
	}
}

// TestRegisterSharesHealth registers two services on one server: they share
// one health service, and deregistering one leaves the other SERVING.
func TestRegisterSharesHealth(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	other := grpc.ServiceDesc{ServiceName: "pkg.Other", HandlerType: (*any)(nil)}
	r1, err := Register(s, &Service{FullName: "pkg.Svc"}, &testDesc, struct{}{})
	if err != nil {
		t.Fatal(err)
	}
	r2, err := Register(s, &Service{FullName: "pkg.Other"}, &other, struct{}{})
	if err != nil {
		t.Fatal(err)
	}
	if r1.Health() != r2.Health() {
		t.Error("two services on one server got different health servers")
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	status := func(svc string) healthpb.HealthCheckResponse_ServingStatus {
		resp, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil {
			t.Fatalf("Check(%s) = %v", svc, err)
		}
		return resp.GetStatus()
	}
	if err := r1.Deregister(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := status("pkg.Svc"); got != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("pkg.Svc after Deregister = %v", got)
	}
	if got := status("pkg.Other"); got != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("pkg.Other = %v, want SERVING", got)
	}
	if err := r2.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve = %v after Shutdown", err)
	}
}

func TestRegisterHealthAlreadyRegistered(t *testing.T) {
	s := grpc.NewServer()
	h := health.NewServer()
	healthpb.RegisterHealthServer(s, h)
	if _, err := Register(s, &Service{FullName: "pkg.Svc"}, &testDesc, struct{}{}); !errors.Is(err, ErrHealthRegistered) {
		t.Fatalf("Register on a server with its own health service = %v, want ErrHealthRegistered", err)
	}
	r, err := Register(s, &Service{FullName: "pkg.Svc"}, &testDesc, struct{}{}, WithHealthServer(h))
	if err != nil {
		t.Fatalf("Register(WithHealthServer) = %v", err)
	}
	if r.Health() != h {
		t.Error("Registration does not use the given health server")
	}
	r.Shutdown(context.Background())
}

// TestDialFailurePolicy: WithFailurePolicy reaches the watch: with a DNS
// server that refuses, the static fallback serves the calls; a bad policy
// is an error.
func TestDialFailurePolicy(t *testing.T) {
	b := testbackend.Start(t)
	svc := &Service{Discovery: dns.Config{Host: "svc.test", Port: 80, Server: "127.0.0.1:1"}}
	ctx, cancel := context.WithTimeout(context.Background(), resolvertest.Timeout)
	defer cancel()
	c, err := Dial(ctx, svc, WithInsecure(), WithFailurePolicy(discovery.FailurePolicy{Mode: discovery.StaticFallback, Fallback: []string{b.Addr}}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := healthpb.NewHealthClient(c).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true)); err != nil {
		t.Errorf("call with the DNS server down and a static fallback: %v", err)
	}
	if _, err := Dial(ctx, svc, WithInsecure(), WithFailurePolicy(discovery.FailurePolicy{Mode: discovery.StaticFallback})); err == nil || !strings.Contains(err.Error(), "fallback") {
		t.Errorf("Dial with a fallback policy without addresses = %v, want an error", err)
	}
}

// ownPolicy is a policy of a user's: round_robin under a name of its own,
// counting the balancers it builds.
type ownPolicy struct{}

func (ownPolicy) BalancerName() string { return "test_own_policy" }
func (ownPolicy) BalancerConfig() any  { return struct{}{} }

var ownBuilt atomic.Int32

type ownBuilder struct{}

func (ownBuilder) Name() string { return "test_own_policy" }

func (ownBuilder) Build(cc balancer.ClientConn, opts balancer.BuildOptions) balancer.Balancer {
	ownBuilt.Add(1)
	return balancer.Get(roundrobin.Name).Build(cc, opts)
}

// TestOwnPolicy: a policy of the user's, registered with grpc-go, is
// selected with WithBalancer.
func TestOwnPolicy(t *testing.T) {
	balancer.Register(ownBuilder{})
	b := testbackend.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), resolvertest.Timeout)
	defer cancel()
	c, err := Dial(ctx, &Service{Discovery: static.Config{Addresses: []string{b.Addr}}}, WithInsecure(), WithBalancer(ownPolicy{}), WithBlock())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := healthpb.NewHealthClient(c).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	if ownBuilt.Load() == 0 {
		t.Error("the user's policy was not built")
	}
}

// hijacker is another library's balancer registered under one of our
// names.
type hijacker struct{ balancer.Builder }

// TestHijackedName: when another package registers one of our policy names
// after us (grpc-go keeps the last registration), Dial refuses it and names
// the package instead of sending our calls to it.
func TestHijackedName(t *testing.T) {
	orig := balancer.Get(Random{}.BalancerName())
	balancer.Register(hijacker{orig})
	defer balancer.Register(orig)
	_, err := ServiceConfig(&Service{FullName: "x.Y", Balancer: Random{}})
	if err == nil || !strings.Contains(err.Error(), "runtime/lb") || !strings.Contains(err.Error(), `"lb_random" is registered by`) {
		t.Fatalf("ServiceConfig with lb_random hijacked: %v, want an error naming the package", err)
	}
	balancer.Register(orig)
	if _, err := ServiceConfig(&Service{FullName: "x.Y", Balancer: Random{}}); err != nil {
		t.Fatalf("ServiceConfig with our lb_random: %v", err)
	}
	// The wrappers around the policy too.
	for _, tc := range []struct {
		name string
		svc  *Service
	}{
		{pool.Name, &Service{FullName: "x.Y", Balancer: Random{}, PoolSize: 2}},
		{hedge.Name, &Service{FullName: "x.Y", Balancer: Random{}, Methods: []Method{{Name: "M", Hedging: &Hedging{MaxAttempts: 2, Delay: time.Millisecond}}}}},
		{outlier.Name, &Service{FullName: "x.Y", Balancer: Random{}, OutlierEjection: &OutlierEjection{}}},
		{slowstart.Name, &Service{FullName: "x.Y", Balancer: Random{}, SlowStart: &SlowStart{Window: time.Minute}}},
	} {
		if _, err := ServiceConfig(tc.svc); err != nil {
			t.Fatalf("ServiceConfig with our %s: %v", tc.name, err)
		}
		orig := balancer.Get(tc.name)
		balancer.Register(hijacker{orig})
		_, err := ServiceConfig(tc.svc)
		balancer.Register(orig)
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q is registered by", tc.name)) {
			t.Errorf("ServiceConfig with %s hijacked: %v, want an error naming the package", tc.name, err)
		}
	}
}

// TestPoolServiceConfig: a PoolSize above 1 wraps the policy in lb_pool;
// pick_first and sizes above 64 are refused.
func TestPoolServiceConfig(t *testing.T) {
	sc, err := ServiceConfig(&Service{FullName: "x.Y", Balancer: LeastRequest{}, PoolSize: 4})
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		LoadBalancingConfig []map[string]struct {
			Size        int                          `json:"size"`
			ChildPolicy []map[string]json.RawMessage `json:"childPolicy"`
		} `json:"loadBalancingConfig"`
	}
	if err := json.Unmarshal([]byte(sc), &got); err != nil {
		t.Fatal(err)
	}
	p, ok := got.LoadBalancingConfig[0]["lb_pool"]
	if !ok || p.Size != 4 || len(p.ChildPolicy) != 1 || p.ChildPolicy[0]["lb_least_request"] == nil {
		t.Errorf("service config %s: want lb_pool of size 4 over lb_least_request", sc)
	}
	for _, svc := range []*Service{
		{FullName: "x.Y", Balancer: PickFirst{}, PoolSize: 2},
		{FullName: "x.Y", PoolSize: 65},
	} {
		if sc, err := ServiceConfig(svc); err == nil {
			t.Errorf("ServiceConfig(%s, pool %d) = %s, want an error", svc.Balancer, svc.PoolSize, sc)
		}
	}
}

// TestLayersServiceConfig: the layers a service declares wrap its policy
// in layers.go's order, outermost first; slow start is refused where a
// ramp has no meaning, and a layer's bad setting names it.
func TestLayersServiceConfig(t *testing.T) {
	svc := &Service{
		FullName: "x.Y", Balancer: P2CEWMA{}, PoolSize: 2,
		OutlierEjection: &OutlierEjection{MaxEjectedPercent: 30},
		SlowStart:       &SlowStart{Window: time.Minute},
		Methods:         []Method{{Name: "M", Idempotent: true, Hedging: &Hedging{MaxAttempts: 2, Delay: time.Millisecond}}},
		Streams:         []string{"Watch"},
	}
	sc, err := ServiceConfig(svc)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		LoadBalancingConfig []map[string]json.RawMessage `json:"loadBalancingConfig"`
	}
	if err := json.Unmarshal([]byte(sc), &got); err != nil {
		t.Fatal(err)
	}
	var chain []string
	entry := got.LoadBalancingConfig[0]
	var last json.RawMessage
	for len(entry) == 1 {
		for name, cfg := range entry {
			chain, last = append(chain, name), cfg
			var p struct {
				ChildPolicy []map[string]json.RawMessage `json:"childPolicy"`
			}
			json.Unmarshal(cfg, &p)
			entry = nil
			if len(p.ChildPolicy) > 0 {
				entry = p.ChildPolicy[0]
			}
		}
	}
	want := []string{hedge.Name, outlier.Name, slowstart.Name, pool.Name, P2CEWMA{}.BalancerName()}
	if !slices.Equal(chain, want) {
		t.Errorf("policy chain %v, want %v (service config %s)", chain, want, sc)
	}
	if !strings.Contains(string(last), `"/x.Y/Watch"`) {
		t.Errorf("lb_p2c_ewma's config %s does not list the stream /x.Y/Watch", last)
	}
	if !strings.Contains(sc, `"maxEjectedPercent":30`) {
		t.Errorf("service config %s lost the ejection's setting", sc)
	}
	for _, tc := range []struct {
		svc  *Service
		want string
	}{
		{&Service{FullName: "x.Y", Balancer: PickFirst{}, SlowStart: &SlowStart{Window: time.Minute}}, "no share to ramp"},
		{&Service{FullName: "x.Y", Balancer: ConsistentHash{}, SlowStart: &SlowStart{Window: time.Minute}}, "would move keys"},
		{&Service{FullName: "x.Y", Balancer: RingHash{}, SlowStart: &SlowStart{Window: time.Minute}}, "would move keys"},
		{&Service{FullName: "x.Y", SlowStart: &SlowStart{}}, "window"},
		{&Service{FullName: "x.Y", OutlierEjection: &OutlierEjection{MaxEjectedPercent: 200}}, "max ejected percent 200"},
	} {
		if sc, err := ServiceConfig(tc.svc); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ServiceConfig(%+v) = %s, %v; want an error with %q", tc.svc, sc, err, tc.want)
		}
	}
}

// TestShutdownTakesEveryService: two services registered on one server,
// one Shutdown: both leave the registry, and a client's health Watch
// stream, open all along, neither stalls the drain nor misses NOT_SERVING.
func TestShutdownTakesEveryService(t *testing.T) {
	reg := &fakeRegistry{instances: map[string]discovery.Instance{}, deregistered: make(chan string, 2)}
	s := grpc.NewServer()
	lis := listen(t)
	addr := lis.Addr().String()
	descB := grpc.ServiceDesc{ServiceName: "pkg.Other", HandlerType: (*any)(nil)}
	a, err := Register(s, &Service{Name: "a", FullName: "pkg.Svc", Discovery: reg}, &testDesc, struct{}{}, WithAdvertiseAddress(addr))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Register(s, &Service{Name: "b", FullName: "pkg.Other", Discovery: reg}, &descB, struct{}{}, WithAdvertiseAddress(addr))
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- a.Serve(lis) }()
	waitStatus(t, a, func(err error) bool { return err == nil })
	waitStatus(t, b, func(err error) bool { return err == nil })

	// A monitoring tool's raw Watch stream.
	ctx, cancel := context.WithTimeout(context.Background(), resolvertest.Timeout)
	defer cancel()
	_, watch := watchServing(t, ctx, addr, "pkg.Svc")

	// A context that never ends: the drain deadline still applies, and
	// the open stream does not make Shutdown wait for it.
	if err := b.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	rep := b.LastShutdown()
	t.Logf("shutdown: %+v", rep)
	got := []string{<-reg.deregistered, <-reg.deregistered}
	slices.Sort(got)
	if want := []string{defaultInstanceID("a", addr), defaultInstanceID("b", addr)}; !slices.Equal(got, want) {
		t.Errorf("deregistered %v, want both services %v", got, want)
	}
	if rep.Forced || rep.Watchers != 1 {
		t.Errorf("shutdown report %+v: want 1 watcher told and no forced stop", rep)
	}
	if m, err := watch.Recv(); err != nil || m.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("Watch after Shutdown: %v, %v; want NOT_SERVING", m, err)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve = %v", err)
	}
	if a.LastShutdown().Watchers != 1 {
		t.Error("the other Registration of the server does not see the Shutdown")
	}
}

// watchServing opens a raw health Watch of service at addr, as a
// monitoring tool does, and returns it once it said SERVING, with its
// client; the connection closes when the test ends.
func watchServing(t *testing.T, ctx context.Context, addr, service string) (healthpb.HealthClient, healthpb.Health_WatchClient) {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	hc := healthpb.NewHealthClient(cc)
	watch, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := watch.Recv(); err != nil || m.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Watch(%q): %v, %v; want SERVING", service, m, err)
	}
	return hc, watch
}

// TestShutdownWholeServer: the whole server's health, service "" (what
// Kubernetes' gRPC probe, grpc-health-probe and most load balancers check),
// goes NOT_SERVING with the services when Shutdown begins: a Check while
// the instance leaves the registry says so, and a Watch stream on "" is
// told before it ends, counted and waited for like the services' watchers.
func TestShutdownWholeServer(t *testing.T) {
	// Unbuffered: Deregister waits until the test takes its instance.
	reg := &fakeRegistry{instances: map[string]discovery.Instance{}, deregistered: make(chan string)}
	s := grpc.NewServer()
	lis := listen(t)
	addr := lis.Addr().String()
	r, err := Register(s, &Service{Name: "a", FullName: "pkg.Svc", Discovery: reg}, &testDesc, struct{}{}, WithAdvertiseAddress(addr))
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- r.Serve(lis) }()
	waitStatus(t, r, func(err error) bool { return err == nil })
	ctx, cancel := context.WithTimeout(context.Background(), resolvertest.Timeout)
	defer cancel()
	hc, watch := watchServing(t, ctx, addr, "")
	type recv struct {
		status healthpb.HealthCheckResponse_ServingStatus
		err    error
	}
	got := make(chan recv, 8)
	go func() {
		for {
			m, err := watch.Recv()
			got <- recv{m.GetStatus(), err}
			if err != nil {
				return
			}
		}
	}()

	shut := make(chan error, 1)
	go func() { shut <- r.Shutdown(context.Background()) }()
	deregistered := false
	defer func() { // a failure below leaves Deregister waiting
		if !deregistered {
			<-reg.deregistered
			<-shut
		}
	}()
	// Shutdown cannot get past Deregister until the test takes the
	// instance: what the watcher and a Check see now, they see before it.
	select {
	case m := <-got:
		if m.err != nil || m.status != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Fatalf(`Watch("") once Shutdown began: %v, %v; want NOT_SERVING before the stream ends`, m.status, m.err)
		}
	case <-ctx.Done():
		t.Fatal(`Watch("") was not told NOT_SERVING while the instance left the registry`)
	}
	if m, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: ""}); err != nil || m.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf(`Check("") while the instance leaves the registry = %v, %v; want NOT_SERVING`, m.GetStatus(), err)
	}
	if id := <-reg.deregistered; id != defaultInstanceID("a", addr) {
		t.Errorf("deregistered %q, want %q", id, defaultInstanceID("a", addr))
	}
	deregistered = true
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
	if m := <-got; m.err == nil {
		t.Errorf(`Watch("") after Shutdown: %v, want the stream ended`, m.status)
	}
	if rep := r.LastShutdown(); rep.Watchers != 1 || rep.Forced {
		t.Errorf(`shutdown report %+v: want the watcher of "" counted, no forced stop`, rep)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve = %v", err)
	}
}

// TestDefaultAuthority: a registry service's channel verifies the
// service's name from the proto; DNS and static targets, names that are
// no host names, WithTarget and credentials naming a server keep gRPC's
// choice.
func TestDefaultAuthority(t *testing.T) {
	reg := &fakeRegistry{}
	named := credentials.NewTLS(&tls.Config{ServerName: "greeter.internal"})
	unnamed := credentials.NewTLS(&tls.Config{})
	for _, tc := range []struct {
		name string
		svc  *Service
		o    dialOptions
		want string // "" for none
	}{
		{"registry", &Service{Name: "helloworld.Greeter", Discovery: reg}, dialOptions{insecure: true}, "helloworld.Greeter"},
		{"registry over TLS", &Service{Name: "helloworld.Greeter", Discovery: reg}, dialOptions{creds: unnamed}, "helloworld.Greeter"},
		{"credentials name the server", &Service{Name: "helloworld.Greeter", Discovery: reg}, dialOptions{creds: named}, ""},
		{"WithTarget", &Service{Name: "helloworld.Greeter", Discovery: reg}, dialOptions{insecure: true, target: "static:///10.0.0.1:1"}, ""},
		{"a name with a slash", &Service{Name: "team/greeter", Discovery: reg}, dialOptions{insecure: true}, ""},
		{"static", &Service{Name: "helloworld.Greeter", Discovery: static.Config{Addresses: []string{"greeter.internal:443"}}}, dialOptions{insecure: true}, ""},
	} {
		got, ok := defaultAuthority(tc.svc, tc.o)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("%s: defaultAuthority = %q, %v; want %q", tc.name, got, ok, tc.want)
		}
	}
}

// TestRegisterPublishesLocality: an instance is published with the zone
// and region of LB_ZONE and LB_REGION, WithLocality's in their place, and
// WithMetadata's before either.
func TestRegisterPublishesLocality(t *testing.T) {
	t.Setenv(ZoneEnv, "env-zone")
	t.Setenv(RegionEnv, "env-region")
	for _, tc := range []struct {
		name         string
		opts         []RegisterOption
		zone, region string
	}{
		{"environment", nil, "env-zone", "env-region"},
		{"WithLocality", []RegisterOption{WithLocality("opt-zone", "opt-region")}, "opt-zone", "opt-region"},
		{"WithMetadata", []RegisterOption{WithLocality("opt-zone", "opt-region"), WithMetadata(discovery.Metadata{Zone: "md-zone"})}, "md-zone", "opt-region"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := &fakeRegistry{instances: map[string]discovery.Instance{}}
			s := grpc.NewServer()
			lis := listen(t)
			opts := append([]RegisterOption{WithAdvertiseAddress(lis.Addr().String()), WithInstanceID("i")}, tc.opts...)
			r, err := Register(s, &Service{Name: "a", FullName: "pkg.Svc", Discovery: reg}, &testDesc, struct{}{}, opts...)
			if err != nil {
				t.Fatal(err)
			}
			go r.Serve(lis)
			defer s.Stop()
			waitStatus(t, r, func(err error) bool { return err == nil })
			reg.mu.Lock()
			md := reg.instances["i"].Metadata
			reg.mu.Unlock()
			if md.Zone != tc.zone || md.Region != tc.region {
				t.Errorf("published zone %q region %q, want %q %q", md.Zone, md.Region, tc.zone, tc.region)
			}
		})
	}
}

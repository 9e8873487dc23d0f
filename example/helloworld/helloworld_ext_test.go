package helloworld_test

// End-to-end tests of the generated code: the generated balanced client
// against in-process greeter servers registered with the generated helper.

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/example/greeter"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/example/helloworld"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/etcdserver"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/load"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/resolvertest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/dns"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/lb"
)

func TestMain(m *testing.M) { resolvertest.VerifyTestMain(m) }

const testTimeout = 20 * time.Second

// startServers starts n greeter servers on loopback and returns their
// addresses; they stop when the test ends. With a registry they register
// in it, else they are not put in any registry.
func startServers(t testing.TB, n int, registry ...string) ([]*greeter.Instance, []string) {
	t.Helper()
	var ins []*greeter.Instance
	var addrs []string
	o := greeter.Options{NoRegistry: true}
	if len(registry) > 0 {
		o = greeter.Options{Registry: registry[0]}
	}
	for range n {
		in, err := greeter.Start("127.0.0.1:0", o)
		if err != nil {
			t.Fatalf("greeter.Start: %v", err)
		}
		t.Cleanup(func() { in.Registration.Shutdown(context.Background()) })
		ins = append(ins, in)
		addrs = append(addrs, in.Addr)
	}
	return ins, addrs
}

func newClient(t *testing.T, opts ...lb.DialOption) *helloworld.GreeterBalancedClient {
	t.Helper()
	c, err := helloworld.NewGreeterBalancedClient(context.Background(), append([]lb.DialOption{lb.WithInsecure()}, opts...)...)
	if err != nil {
		t.Fatalf("NewGreeterBalancedClient: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitForBackends calls until every one of want has answered, or fails the
// test at the deadline.
func waitForBackends(t testing.TB, c *helloworld.GreeterBalancedClient, want ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	seen := map[string]bool{}
	for {
		missing := 0
		for _, w := range want {
			if !seen[w] {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		reply, err := c.SayHello(ctx, &helloworld.HelloRequest{Name: "wait"})
		if ctx.Err() != nil {
			t.Fatalf("backends %v never all answered; saw %v (last error %v)", want, seen, err)
		}
		if err == nil {
			seen[reply.GetBackend()] = true
		}
	}
}

// count makes n calls and returns the calls per backend; any error fails
// the test.
func count(t *testing.T, c *helloworld.GreeterBalancedClient, n int) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	got := map[string]int{}
	for i := range n {
		reply, err := c.SayHello(ctx, &helloworld.HelloRequest{Name: "count"})
		if err != nil {
			t.Fatalf("call %d: SayHello() = %v", i, err)
		}
		got[reply.GetBackend()]++
	}
	return got
}

// TestHedgeStatsOfTheGeneratedClient: the hedge counts are a method of the
// balanced client; Greeter hedges no method, so they stay zero.
func TestHedgeStatsOfTheGeneratedClient(t *testing.T) {
	_, addrs := startServers(t, 1)
	c := newClient(t, staticTarget(addrs))
	count(t, c, 5)
	if got := c.HedgeStats(); got != (lb.HedgeStats{}) {
		t.Errorf("HedgeStats() = %+v, want zero: Greeter hedges no method", got)
	}
}

func TestRoundRobinSpreadsEvenly(t *testing.T) {
	_, addrs := startServers(t, 3)
	c := newClient(t, staticTarget(addrs))
	waitForBackends(t, c, addrs...)
	got := count(t, c, 300)
	for _, a := range addrs {
		if got[a] < 90 || got[a] > 110 {
			t.Errorf("round_robin: backend %s got %d of 300 calls, want 100±10%% (all: %v)", a, got[a], got)
		}
	}
}

func TestPickFirstSticksToOneBackend(t *testing.T) {
	_, addrs := startServers(t, 3)
	c := newClient(t, staticTarget(addrs), lb.WithBalancer(lb.PickFirst{}))
	got := count(t, c, 300)
	if len(got) != 1 {
		t.Errorf("pick_first: calls went to %d backends, want 1: %v", len(got), got)
	}
}

// TestPickFirstSpreadsAFleet: 1,000 pick_first clients over 5 instances
// spread over them (each client shuffles, gRFC A62): none gets more than
// twice its share.
func TestPickFirstSpreadsAFleet(t *testing.T) {
	_, addrs := startServers(t, 5)
	got := map[string]int{}
	for range 1000 {
		c := newClient(t, staticTarget(addrs), lb.WithBalancer(lb.PickFirst{}))
		for b := range count(t, c, 1) {
			got[b]++
		}
		c.Close()
	}
	for _, a := range addrs {
		if got[a] > 2*1000/len(addrs) {
			t.Errorf("pick_first: %d of 1,000 clients on %s, want at most twice its share (all: %v)", got[a], a, got)
		}
	}
	t.Logf("1,000 pick_first clients over 5 instances: %v", got)
}

// TestEveryPolicyThroughTheGeneratedClient: the generated client works
// under each policy of the runtime (the plugin's golden files check which
// Config each proto option makes): every call answers, and the policies
// that spread reach all three backends.
func TestEveryPolicyThroughTheGeneratedClient(t *testing.T) {
	_, addrs := startServers(t, 3)
	for _, b := range []lb.Balancer{
		lb.RoundRobin{}, lb.Random{}, lb.LeastRequest{}, lb.P2CEWMA{},
		lb.WeightedRoundRobin{}, lb.ConsistentHash{}, lb.RingHash{},
	} {
		t.Run(b.BalancerName(), func(t *testing.T) {
			c := newClient(t, staticTarget(addrs), lb.WithBalancer(b))
			// Calls until each backend has answered (the Greeter has no
			// hash key: the hashing policies spread calls without one).
			waitForBackends(t, c, addrs...)
			got, n := count(t, c, 30), 0
			for _, calls := range got {
				n += calls
			}
			if n != 30 {
				t.Errorf("%d of 30 calls answered: %v", n, got)
			}
		})
	}
}

func TestRandomReachesAll(t *testing.T) {
	_, addrs := startServers(t, 3)
	c := newClient(t, staticTarget(addrs), lb.WithBalancer(lb.Random{}))
	// Random picks only among READY backends: wait until all three are.
	waitForBackends(t, c, addrs...)
	got := count(t, c, 300)
	for _, a := range addrs {
		// Each backend expects 100; below 50 has probability ~1e-9.
		if got[a] < 50 {
			t.Errorf("random: backend %s got %d of 300 calls, want about 100 (all: %v)", a, got[a], got)
		}
	}
}

// TestConnReachesEveryBackend: Conn gives the client's one ClientConn, and
// the service's policy reaches both backends through it. (The pool, N
// transports per address in that one ClientConn, is runtime/balancer/pool's
// TestPoolOfFour.)
func TestConnReachesEveryBackend(t *testing.T) {
	_, addrs := startServers(t, 2)
	c := newClient(t, staticTarget(addrs))
	if c.Conn() == nil {
		t.Fatal("Conn() = nil")
	}
	waitForBackends(t, c, addrs...)
}

// fakeDNS answers SRV lookups from a list the test changes; hosts are IP
// literals and resolve to themselves.
type fakeDNS struct {
	mu      sync.Mutex
	srvs    []*net.SRV    // guarded by mu
	err     error         // guarded by mu
	lookups chan struct{} // gets a token per lookup, when there is room
}

// waitLookups waits for n lookups after the call.
func (f *fakeDNS) waitLookups(t *testing.T, n int) {
	t.Helper()
	for range len(f.lookups) {
		<-f.lookups // drop tokens of earlier lookups
	}
	deadline := time.NewTimer(testTimeout)
	defer deadline.Stop()
	for range n {
		select {
		case <-f.lookups:
		case <-deadline.C:
			t.Fatalf("no DNS lookup within %v", testTimeout)
		}
	}
}

func (f *fakeDNS) set(addrs []string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
	f.srvs = nil
	for _, a := range addrs {
		host, port, _ := net.SplitHostPort(a)
		p, _ := strconv.Atoi(port)
		f.srvs = append(f.srvs, &net.SRV{Target: host, Port: uint16(p), Weight: 10})
	}
}

func (f *fakeDNS) LookupSRV(context.Context, string, string, string) (string, []*net.SRV, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	select {
	case f.lookups <- struct{}{}:
	default:
	}
	return "", f.srvs, f.err
}

func (f *fakeDNS) LookupHost(_ context.Context, host string) ([]string, error) {
	return []string{host}, nil
}

func TestDNSSeesNewBackendAfterRefresh(t *testing.T) {
	ins, addrs := startServers(t, 4)
	fake := &fakeDNS{lookups: make(chan struct{}, 1)}
	fake.set(addrs[:3], nil)
	builder := dns.NewBuilder(dns.WithNetResolver(func(string) dns.NetResolver { return fake }))
	c := newClient(t,
		lb.WithTarget("lbdns:///greeter.test?record=srv&refresh=50ms"),
		lb.WithDialOptions(grpc.WithResolvers(builder)))
	waitForBackends(t, c, addrs[:3]...)

	// A failing lookup keeps the last good addresses: no call fails.
	fake.set(nil, errors.New("SERVFAIL"))
	fake.waitLookups(t, 2)
	got := count(t, c, 60)
	if len(got) != 3 {
		t.Errorf("during DNS failure calls went to %v, want the 3 known backends", got)
	}

	fake.set(addrs, nil)
	waitForBackends(t, c, ins[3].Addr)
}

// TestStoppingBackendFailsOnlyInFlightCalls runs 4 callers without pause,
// shuts one backend down gracefully (0 failures allowed) and stops another
// hard (failures only among the calls in flight on it).
func TestStoppingBackendFailsOnlyInFlightCalls(t *testing.T) {
	ins, addrs := startServers(t, 3)
	c := newClient(t, staticTarget(addrs))
	waitForBackends(t, c, addrs...)

	const callers = 4
	var (
		mu     sync.Mutex
		counts = map[string]int{} // guarded by mu
		// progress gets a token after each successful call.
		progress = make(chan struct{}, 1)
	)
	l := load.Start(callers, func(ctx context.Context) error {
		reply, err := c.SayHello(ctx, &helloworld.HelloRequest{Name: "load"})
		if err != nil {
			return err
		}
		mu.Lock()
		counts[reply.GetBackend()]++
		mu.Unlock()
		select {
		case progress <- struct{}{}:
		default:
		}
		return nil
	})
	t.Cleanup(func() { l.Stop() })
	snapshot := func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		m := map[string]int{}
		for k, v := range counts {
			m[k] = v
		}
		return m
	}
	// waitCalls waits until at least n more calls succeeded.
	waitCalls := func(n int) {
		t.Helper()
		total := func() (s int) {
			for _, v := range snapshot() {
				s += v
			}
			return s
		}
		target := total() + n
		deadline := time.NewTimer(testTimeout)
		defer deadline.Stop()
		for total() < target {
			select {
			case <-progress:
			case <-deadline.C:
				t.Fatalf("calls stalled: %v", snapshot())
			}
		}
	}

	waitCalls(200)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := ins[0].Registration.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	waitCalls(200)
	if n := l.Failed(); n != 0 {
		t.Errorf("graceful shutdown of %s: %d calls failed, want 0", addrs[0], n)
	}

	ins[1].Server.Stop()
	afterStop := snapshot()
	waitCalls(300)
	_, failed, firstErr := l.Stop()
	if failed > callers {
		t.Errorf("hard stop of %s: %d calls failed, want at most the %d in flight (first: %v)", addrs[1], failed, callers, firstErr)
	}
	final := snapshot()
	if final[addrs[0]] != afterStop[addrs[0]] {
		t.Errorf("shut-down backend %s got calls after its shutdown", addrs[0])
	}
	if got := final[addrs[2]] - afterStop[addrs[2]]; got < 300 {
		t.Errorf("remaining backend %s got %d of the last 300 calls, want all", addrs[2], got)
	}
	t.Logf("calls per backend %v, failed %d", final, failed)
}

// staticTarget points the client at addrs, bypassing the proto's etcd.
func staticTarget(addrs []string) lb.DialOption {
	return lb.WithTarget("static:///" + strings.Join(addrs, ","))
}

func startEtcd(t *testing.T) string {
	t.Helper()
	s, err := etcdserver.Start(t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	// Before etcd stops (cleanups run last first) and after the test's
	// clients closed: the watch they shared stops now rather than after
	// its linger, so etcd does not wait for its stream to end.
	t.Cleanup(discovery.CloseIdleWatches)
	return s.Endpoint()
}

// TestEtcdRegisteredServersGetCalls registers three servers in a real etcd
// through the generated helper: the generated client, finding them there,
// spreads its calls; a deregistered server stops getting calls.
func TestEtcdRegisteredServersGetCalls(t *testing.T) {
	endpoint := startEtcd(t)
	ins, addrs := startServers(t, 3, endpoint)
	wctx, wcancel := context.WithTimeout(context.Background(), testTimeout)
	defer wcancel()
	for _, in := range ins {
		if err := in.Registration.WaitRegistered(wctx); err != nil {
			t.Fatalf("%s not registered: %v", in.Addr, err)
		}
	}
	c := newClient(t, lb.WithRegistryAddress(endpoint))
	waitForBackends(t, c, addrs...)
	got := count(t, c, 300)
	for _, a := range addrs {
		if got[a] < 90 || got[a] > 110 {
			t.Errorf("backend %s got %d of 300 calls, want 100±10%% (all: %v)", a, got[a], got)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := ins[0].Registration.Deregister(ctx); err != nil {
		t.Fatal(err)
	}
	// The deregistered server keeps serving calls already sent to it; wait
	// until the client has stopped sending more, then it must get none.
	for run := 0; run < 50; {
		reply, err := c.SayHello(ctx, &helloworld.HelloRequest{Name: "drain"})
		if err != nil {
			t.Fatalf("SayHello while deregistering = %v", err)
		}
		if reply.GetBackend() == addrs[0] {
			run = 0
		} else {
			run++
		}
	}
	got = count(t, c, 300)
	if got[addrs[0]] != 0 {
		t.Errorf("deregistered backend %s got %d of 300 calls, want 0 (all: %v)", addrs[0], got[addrs[0]], got)
	}
}

func TestNoCredentialsIsAnError(t *testing.T) {
	_, err := helloworld.NewGreeterBalancedClient(context.Background())
	if !errors.Is(err, lb.ErrNoCredentials) {
		t.Fatalf("NewGreeterBalancedClient() without credentials = %v, want ErrNoCredentials", err)
	}
}

func TestBadRegistryAddressNamesIt(t *testing.T) {
	_, err := helloworld.NewGreeterBalancedClient(context.Background(), lb.WithInsecure(), lb.WithRegistryAddress("127.0.0.1:2379,nohost"))
	if err == nil || !strings.Contains(err.Error(), `"nohost"`) {
		t.Fatalf("NewGreeterBalancedClient(bad address) = %v, want an error naming \"nohost\"", err)
	}
}

// TestRegisterServesHealth checks that the generated Register helper serves
// grpc.health.v1 for the service, and Deregister turns it NOT_SERVING.
func TestRegisterServesHealth(t *testing.T) {
	ins, addrs := startServers(t, 1)
	conn, err := grpc.NewClient(addrs[0], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	check := func() healthpb.HealthCheckResponse_ServingStatus {
		t.Helper()
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: helloworld.Greeter_ServiceDesc.ServiceName})
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		return resp.GetStatus()
	}
	if got := check(); got != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health after Register = %v, want SERVING", got)
	}
	if err := ins[0].Registration.Deregister(ctx); err != nil {
		t.Fatal(err)
	}
	if got := check(); got != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health after Deregister = %v, want NOT_SERVING", got)
	}
	if ins[0].Registration.InRegistry() {
		t.Error("InRegistry() = true for a server started without a registry, want false")
	}
}

func TestServiceName(t *testing.T) {
	if got, want := helloworld.GreeterServiceName, "helloworld.Greeter"; got != want {
		t.Errorf("GreeterServiceName = %q, want %q", got, want)
	}
}

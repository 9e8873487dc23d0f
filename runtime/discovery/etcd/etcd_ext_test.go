package etcd_test

// Tests against a real etcd: an embedded single-member server
// (internal/etcdserver), stopped and restarted on the same data directory
// where a test needs it, and reached through a proxy that cuts the path
// where a test needs a partition.

import (
	"context"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/grpclog"
	"google.golang.org/grpc/resolver"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/cctest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/etcdserver"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/faultproxy"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/resolvertest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/secrettest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/etcd"
)

// scan checks every log line of the package's tests, the fault tests
// (etcd stopped, cut off, a bad CA, auth without TLS) among them, for the
// sentinel passwords below.
var scan = &secrettest.Scanner{}

// The sentinel passwords of the tests: no log line may show them.
var (
	plaintextPassword = secrettest.Secret("pw-4f1d6c")
	tlsPassword       = secrettest.Secret("pw-73a9e0")
)

func TestMain(m *testing.M) {
	if spec := os.Getenv("LB_GOKIT_REGISTRAR"); spec != "" {
		runGoKitRegistrar(spec)
	}
	// Every severity to the scanner; errors to stderr too, as before.
	grpclog.SetLoggerV2(grpclog.NewLoggerV2WithVerbosity(scan, io.Discard, os.Stderr, 99))
	resolvertest.VerifyTestMainScanning(m, scan)
}

const timeout = resolvertest.Timeout

func startEtcd(t testing.TB) *etcdserver.Server {
	t.Helper()
	s, err := etcdserver.Start(t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// startProxy starts a proxy to target that the test can cut.
func startProxy(t testing.TB, target string) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.New(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// rawClient is a plain etcd client for the test's own reads and writes.
func rawClient(t testing.TB, endpoint string) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return ctx
}

// buildResolver builds an etcd resolver of target with a recording
// ClientConn; it is closed when the test ends.
func buildResolver(t testing.TB, target string, opts ...etcd.Option) *cctest.ClientConn {
	t.Helper()
	return cctest.Build(t, etcd.NewBuilder(opts...), target)
}

func register(t testing.TB, cfg etcd.Config, registry, service, id, addr string) *etcd.Registrar {
	t.Helper()
	reg, err := cfg.NewRegistrar(discovery.Instance{Service: service, ID: id, Address: addr}, registry)
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Register(ctxT(t)); err != nil {
		t.Fatalf("Register(%s) = %v", id, err)
	}
	t.Cleanup(func() { reg.(*etcd.Registrar).Deregister(context.Background()) })
	return reg.(*etcd.Registrar)
}

func TestResolverSeesRegistrations(t *testing.T) {
	s := startEtcd(t)
	cfg := etcd.Config{}
	target, err := cfg.Target("greeter", s.Endpoint())
	if err != nil {
		t.Fatal(err)
	}
	regs := []*etcd.Registrar{
		register(t, cfg, s.Endpoint(), "greeter", "a", "10.0.0.1:1"),
		register(t, cfg, s.Endpoint(), "greeter", "b", "10.0.0.2:1"),
	}
	cc := buildResolver(t, target)
	cc.WaitAddrs(t, "10.0.0.1:1", "10.0.0.2:1")

	register(t, cfg, s.Endpoint(), "greeter", "c", "10.0.0.3:1")
	register(t, cfg, s.Endpoint(), "other", "d", "10.0.0.4:1") // another service
	cc.WaitAddrs(t, "10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1")

	if err := regs[0].Deregister(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	cc.WaitAddrs(t, "10.0.0.2:1", "10.0.0.3:1")
	resp, err := rawClient(t, s.Endpoint()).Get(ctxT(t), "/services/greeter/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || resp.Count != 2 {
		t.Errorf("keys after Deregister = %v, %v; want 2", resp, err)
	}
}

// TestBadValuesAreDropped writes every kind of bad value next to good ones,
// before the resolver starts (the list) and after (the watch): exactly the
// valid set is published.
func TestBadValuesAreDropped(t *testing.T) {
	s := startEtcd(t)
	c := rawClient(t, s.Endpoint())
	put := func(kvs map[string]string) {
		for k, v := range kvs {
			if _, err := c.Put(ctxT(t), "/services/bad/"+k, v); err != nil {
				t.Fatal(err)
			}
		}
	}
	bad := map[string]string{
		"json":      `{"Addr":`,
		"port0":     "10.0.0.9:0",
		"port70000": `{"Addr":"10.0.0.9:70000"}`,
		"nohost":    ":80",
		"big":       "10.0.0.9:1" + strings.Repeat(" ", 10*1024),
	}
	put(bad)
	put(map[string]string{"good1": `{"Addr":"10.0.0.1:1"}`, "good2": "10.0.0.2:1", "dup": "10.0.0.1:1"})
	cc := buildResolver(t, "etcd://"+s.Endpoint()+"/services/bad")
	cc.WaitAddrs(t, "10.0.0.1:1", "10.0.0.2:1")

	for k, v := range bad {
		put(map[string]string{k + "-later": v})
	}
	put(map[string]string{"good3": "10.0.0.3:1"})
	cc.WaitAddrs(t, "10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1")
	// A good key turning bad is dropped on its own.
	put(map[string]string{"good2": "garbage"})
	cc.WaitAddrs(t, "10.0.0.1:1", "10.0.0.3:1")
}

// TestCompactionWhileWatchBroken cuts the resolver's path to etcd, changes
// the instances and compacts the history, then heals: the watch cannot
// resume, so the resolver lists once more and the view is right.
func TestCompactionWhileWatchBroken(t *testing.T) {
	s := startEtcd(t)
	c := rawClient(t, s.Endpoint())
	p := startProxy(t, s.Endpoint())
	for k, v := range map[string]string{"a": "10.0.0.1:1", "b": "10.0.0.2:1"} {
		if _, err := c.Put(ctxT(t), "/services/cmp/"+k, v); err != nil {
			t.Fatal(err)
		}
	}
	lists := make(chan int64, 10)
	cc := buildResolver(t, "etcd://"+p.Addr()+"/services/cmp", etcd.WithListHook(func(rev int64) { lists <- rev }))
	cc.WaitAddrs(t, "10.0.0.1:1", "10.0.0.2:1")
	<-lists

	p.Cut()
	if _, err := c.Delete(ctxT(t), "/services/cmp/a"); err != nil {
		t.Fatal(err)
	}
	resp, err := c.Put(ctxT(t), "/services/cmp/c", "10.0.0.3:1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Compact(ctxT(t), resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	p.Heal()
	cc.WaitAddrs(t, "10.0.0.2:1", "10.0.0.3:1")
	// The hook runs after the listing is published: wait for it.
	select {
	case rev := <-lists:
		if rev < resp.Header.Revision {
			t.Errorf("re-list at revision %d, before the compaction at %d", rev, resp.Header.Revision)
		}
	case <-time.After(timeout):
		t.Fatal("view is right but the resolver did not list again")
	}
	if n := len(lists); n != 0 {
		t.Errorf("%d more lists after the one re-list, want none", n)
	}
	for _, st := range cc.States() {
		if len(st.Endpoints) == 0 {
			t.Error("the resolver published an empty state")
		}
	}
}

// TestLeaseExpiresDuringPartition cuts a registrar's path to etcd: its key
// expires with the lease; after healing the instance registers again, with
// exactly one key, and the registration time of its first registration.
func TestLeaseExpiresDuringPartition(t *testing.T) {
	s := startEtcd(t)
	c := rawClient(t, s.Endpoint())
	p := startProxy(t, s.Endpoint())
	watch := c.Watch(ctxT(t), "/services/part/", clientv3.WithPrefix())
	reg := register(t, etcd.Config{TTL: etcd.MinTTL}, p.Addr(), "part", "x", "10.0.0.1:1")
	next := func(want mvccpb.Event_EventType) (value string) {
		t.Helper()
		select {
		case wr := <-watch:
			for _, ev := range wr.Events {
				if ev.Type != want || string(ev.Kv.Key) != reg.Key() {
					t.Fatalf("event %v %s, want %v %s", ev.Type, ev.Kv.Key, want, reg.Key())
				}
				value = string(ev.Kv.Value)
			}
		case <-time.After(timeout):
			t.Fatalf("no %v event within %v", want, timeout)
		}
		return value
	}
	first := next(clientv3.EventTypePut)
	if !strings.Contains(first, `"registered_at":"`) {
		t.Errorf("value %s has no registered_at", first)
	}
	p.Cut()
	next(clientv3.EventTypeDelete) // the lease expired
	if reg.Status() == nil {
		// The registrar cannot know yet, or can: both are fine; but once
		// healed it must register again.
		t.Log("registrar still believes it is registered")
	}
	p.Heal()
	if again := next(clientv3.EventTypePut); again != first {
		t.Errorf("value registered again = %s, want the first one, %s (the same registration time)", again, first)
	}
	resp, err := c.Get(ctxT(t), "/services/part/", clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("keys after healing = %v, %v; want exactly 1", resp.Kvs, err)
	}
	waitStatus(t, reg)
}

func waitStatus(t *testing.T, reg *etcd.Registrar) {
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
			t.Fatalf("registrar status = %v, want registered", reg.Status())
		}
	}
}

// TestEtcdDownAtStartup starts the resolver and the registrar before etcd:
// Build returns at once, Register fails fast with a deadline and retries,
// and both work once etcd is up.
func TestEtcdDownAtStartup(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cc := buildResolver(t, "etcd://"+addr+"/services/late")
	reg, err := etcd.Config{}.NewRegistrar(discovery.Instance{Service: "late", ID: "x", Address: "10.0.0.1:1"}, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Deregister(context.Background())
	if err := reg.Register(ctxT(t)); err == nil {
		t.Fatal("Register with etcd down succeeded")
	}
	cc.Wait(t, "an error reported while etcd is down", func(_ []resolver.State, errs []error) bool { return len(errs) > 0 })

	s, err := etcdserver.Start(t.TempDir(), addr)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	cc.WaitAddrs(t, "10.0.0.1:1")
	waitStatus(t, reg.(*etcd.Registrar))
}

func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count file descriptors: %v", err)
	}
	return len(entries)
}

// TestOpenCloseCycles builds and closes 200 resolvers: goleak (TestMain)
// finds no goroutine left, and the file descriptors return to baseline.
func TestOpenCloseCycles(t *testing.T) {
	s := startEtcd(t)
	if _, err := rawClient(t, s.Endpoint()).Put(ctxT(t), "/services/cycle/a", "10.0.0.1:1"); err != nil {
		t.Fatal(err)
	}
	target, _ := url.Parse("etcd://" + s.Endpoint() + "/services/cycle")
	open := func() {
		cc := cctest.New()
		r, err := etcd.NewBuilder().Build(resolver.Target{URL: *target}, cc, resolver.BuildOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cc.WaitAddrs(t, "10.0.0.1:1")
		r.Close()
		cc.Closed()
	}
	open() // warm up what stays open for the process (the embedded server's side)
	base := openFDs(t)
	for range 200 {
		open()
	}
	deadline := time.Now().Add(timeout)
	for n := openFDs(t); n > base; n = openFDs(t) {
		if time.Now().After(deadline) {
			t.Fatalf("open file descriptors = %d after 200 cycles, baseline %d", n, base)
		}
		time.Sleep(10 * time.Millisecond) // the server closes its side asynchronously
	}
}

func TestTargets(t *testing.T) {
	for _, tc := range []struct {
		cfg      etcd.Config
		registry string
		want     string
	}{
		{etcd.Config{}, "", "etcd://127.0.0.1:2379/services/svc"},
		{etcd.Config{Endpoints: []string{"10.0.0.1:2379", "10.0.0.2:2379"}, Prefix: "/lb/"}, "", "etcd://10.0.0.1:2379,10.0.0.2:2379/lb/svc"},
		{etcd.Config{Endpoints: []string{"10.0.0.1:2379"}}, "127.0.0.1:1", "etcd://127.0.0.1:1/services/svc"},
	} {
		got, err := tc.cfg.Target("svc", tc.registry)
		if err != nil || got != tc.want {
			t.Errorf("%+v.Target(%q) = %q, %v; want %q", tc.cfg, tc.registry, got, err, tc.want)
		}
	}
	for _, tc := range []struct{ target, want string }{
		{"etcd://127.0.0.1:2379", "empty key prefix"},
		{"etcd://127.0.0.1:0/services/x", `port "0"`},
		{"etcd://user:secret@127.0.0.1:2379/services/x", "credentials are not allowed"},
		{"etcd://127.0.0.1:2379/services/x?token=secret", "query parameters"},
	} {
		u, err := url.Parse(tc.target)
		if err != nil {
			t.Fatal(err)
		}
		_, err = etcd.NewBuilder().Build(resolver.Target{URL: *u}, cctest.New(), resolver.BuildOptions{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Build(%s) = %v, want an error containing %q", tc.target, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("Build(%s) error %q shows the secret", tc.target, err)
		}
	}
	if _, err := (etcd.Config{TTL: time.Second}).NewRegistrar(discovery.Instance{ID: "x", Address: "10.0.0.1:1"}, ""); err == nil {
		t.Error("NewRegistrar with a 1s TTL succeeded, want an error")
	}
}

func discoveryMetadata(ep resolver.Endpoint) (discovery.Metadata, bool) {
	return discovery.MetadataOf(ep)
}

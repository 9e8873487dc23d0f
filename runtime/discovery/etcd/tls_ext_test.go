package etcd_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/resolver"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/cctest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/etcdserver"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/testpki"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/etcd"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/lb"
)

// securityEnv is every environment variable the package reads for TLS and
// credentials.
var securityEnv = []string{"ETCDCTL_CACERT", "ETCDCTL_CERT", "ETCDCTL_KEY", "ETCD_USERNAME", "ETCD_PASSWORD", "LB_ETCD_ALLOW_PLAINTEXT_AUTH"}

// clearSecurityEnv empties securityEnv for the test, whatever the machine
// has set.
func clearSecurityEnv(t *testing.T) {
	for _, k := range securityEnv {
		t.Setenv(k, "")
	}
}

// tlsEtcd is an embedded etcd that serves clients over TLS only and
// requires a client certificate signed by its CA.
type tlsEtcd struct {
	*etcdserver.Server
	ca                *testpki.CA
	certFile, keyFile string      // a client certificate, CN "root"
	tlsConfig         *tls.Config // with the CA and the client certificate
}

func startTLSEtcd(t *testing.T) *tlsEtcd {
	t.Helper()
	ca := testpki.NewCA(t, "etcd-test")
	serverCert, serverKey := ca.Issue(t, "etcd-server", "127.0.0.1", "localhost")
	s, err := etcdserver.Start(t.TempDir(), "", etcdserver.WithTLS(etcdserver.TLS{CertFile: serverCert, KeyFile: serverKey, ClientCAFile: ca.CAFile}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	// CN "root": with authentication enabled, etcd takes the CN of a
	// client certificate as the user of a request without a token.
	e := &tlsEtcd{Server: s, ca: ca}
	e.certFile, e.keyFile = ca.Issue(t, "root")
	pool := x509.NewCertPool()
	pem, err := os.ReadFile(ca.CAFile)
	if err != nil || !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("reading the CA: %v", err)
	}
	cert, err := tls.LoadX509KeyPair(e.certFile, e.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	e.tlsConfig = &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}
	return e
}

// config is a Config of e's endpoint with its CA and client certificate.
func (e *tlsEtcd) config() etcd.Config {
	return etcd.Config{Endpoints: []string{e.URL()}, CACertFile: e.ca.CAFile, CertFile: e.certFile, KeyFile: e.keyFile}
}

// client is the test's own client of e, with the CA and client certificate.
func (e *tlsEtcd) client(t *testing.T) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{e.Endpoint()}, TLS: e.tlsConfig, DialTimeout: timeout, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// getValue returns the value of key, or "" when there is none.
func getValue(t *testing.T, c *clientv3.Client, key string) string {
	t.Helper()
	resp, err := c.Get(ctxT(t), key)
	if err != nil {
		t.Fatalf("Get(%s) = %v", key, err)
	}
	if len(resp.Kvs) == 0 {
		return ""
	}
	return string(resp.Kvs[0].Value)
}

func newRegistrar(t *testing.T, cfg etcd.Config, registry, service, id, addr string) *etcd.Registrar {
	t.Helper()
	reg, err := cfg.NewRegistrar(discovery.Instance{Service: service, ID: id, Address: addr}, registry)
	if err != nil {
		t.Fatalf("NewRegistrar(%s/%s) = %v", service, id, err)
	}
	t.Cleanup(func() { reg.Deregister(context.Background()) })
	return reg.(*etcd.Registrar)
}

// registerFails registers with a short deadline and wants an error.
func registerFails(t *testing.T, reg *etcd.Registrar) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := reg.Register(ctx)
	if err == nil {
		t.Fatalf("Register(%s) succeeded, want an error", reg.Key())
	}
	if reg.Status() == nil {
		t.Errorf("Status() = nil after a failed Register, want an error")
	}
	return err
}

// TestTLSFromConfig registers with a Config that names the CA and client
// certificate files and an https endpoint: the test's own TLS client lists
// the key, and Deregister deletes it.
func TestTLSFromConfig(t *testing.T) {
	clearSecurityEnv(t)
	e := startTLSEtcd(t)
	reg := newRegistrar(t, e.config(), "", "greeter", "a", "10.0.0.1:1")
	if err := reg.Register(ctxT(t)); err != nil {
		t.Fatalf("Register() = %v", err)
	}
	c := e.client(t)
	if got := getValue(t, c, "/services/greeter/a"); !strings.Contains(got, "10.0.0.1:1") {
		t.Fatalf("value of /services/greeter/a = %q, want the instance's address", got)
	}
	if err := reg.Deregister(ctxT(t)); err != nil {
		t.Fatalf("Deregister() = %v", err)
	}
	if got := getValue(t, c, "/services/greeter/a"); got != "" {
		t.Fatalf("value of /services/greeter/a after Deregister = %q, want none", got)
	}
}

// TestTLSFromEnvironment sets etcdctl's variables: plain targets and a
// Config with host:port endpoints use TLS, and Target still returns a
// host:port URL.
func TestTLSFromEnvironment(t *testing.T) {
	clearSecurityEnv(t)
	e := startTLSEtcd(t)
	t.Setenv("ETCDCTL_CACERT", e.ca.CAFile)
	t.Setenv("ETCDCTL_CERT", e.certFile)
	t.Setenv("ETCDCTL_KEY", e.keyFile)

	cfg := etcd.Config{Endpoints: []string{e.Endpoint()}}
	target, err := cfg.Target("greeter", "")
	if want := "etcd://" + e.Endpoint() + "/services/greeter"; err != nil || target != want {
		t.Fatalf("Target() = %q, %v; want %q", target, err, want)
	}
	// An https endpoint says what the environment says already.
	if got, err := (etcd.Config{Endpoints: []string{e.URL()}}).Target("greeter", ""); err != nil || got != target {
		t.Errorf("Target() with an https endpoint = %q, %v; want %q", got, err, target)
	}
	reg := newRegistrar(t, cfg, "", "greeter", "a", "10.0.0.1:1")
	if err := reg.Register(ctxT(t)); err != nil {
		t.Fatalf("Register() = %v", err)
	}
	// After the resolver closes and before etcd stops: a TLS etcd waits
	// for open connections when it stops.
	t.Cleanup(discovery.CloseIdleWatches)
	cc := buildResolver(t, target)
	cc.WaitAddrs(t, "10.0.0.1:1")
}

// TestDialOverTLS: lb.Dial with a Config that holds the TLS settings (and
// none in the environment) finds a backend registered over TLS: the
// Config's settings reach the resolver, which a target URL cannot do.
func TestDialOverTLS(t *testing.T) {
	clearSecurityEnv(t)
	e := startTLSEtcd(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("test.Greeter", healthpb.HealthCheckResponse_SERVING) // lb.Dial's clients check it
	healthpb.RegisterHealthServer(srv, hs)
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(lis)
	}()
	defer func() {
		srv.Stop()
		<-done
	}()
	cfg := e.config()
	reg := newRegistrar(t, cfg, "", "greeter", "a", lis.Addr().String())
	if err := reg.Register(ctxT(t)); err != nil {
		t.Fatalf("Register() = %v", err)
	}
	conn, err := lb.Dial(ctxT(t), &lb.Service{Name: "greeter", FullName: "test.Greeter", Discovery: cfg}, lb.WithInsecure())
	if err != nil {
		t.Fatalf("Dial() = %v", err)
	}
	// Stop the shared watch with the channel, not after its linger: a
	// TLS etcd waits for open connections when it stops.
	defer discovery.CloseIdleWatches()
	defer conn.Close()
	err = conn.Invoke(ctxT(t), "/grpc.health.v1.Health/Check", &healthpb.HealthCheckRequest{}, &healthpb.HealthCheckResponse{}, grpc.WaitForReady(true))
	if err != nil {
		t.Fatalf("a call through lb.Dial = %v", err)
	}
}

// TestTLSFailures: a client that cannot verify etcd, or is not let in,
// fails with an error; one that asks for TLS never falls back to plaintext,
// even to an etcd that serves plaintext.
func TestTLSFailures(t *testing.T) {
	clearSecurityEnv(t)
	e := startTLSEtcd(t)
	other := testpki.NewCA(t, "other")
	otherCert, otherKey := other.Issue(t, "intruder")
	for _, tc := range []struct {
		name string
		cfg  etcd.Config
	}{
		{"system roots", etcd.Config{Endpoints: []string{e.URL()}, CertFile: e.certFile, KeyFile: e.keyFile}},
		{"another CA", etcd.Config{Endpoints: []string{e.URL()}, CACertFile: other.CAFile, CertFile: e.certFile, KeyFile: e.keyFile}},
		{"no client certificate", etcd.Config{Endpoints: []string{e.URL()}, CACertFile: e.ca.CAFile}},
		{"a client certificate of another CA", etcd.Config{Endpoints: []string{e.URL()}, CACertFile: e.ca.CAFile, CertFile: otherCert, KeyFile: otherKey}},
		{"plaintext", etcd.Config{Endpoints: []string{e.Endpoint()}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := newRegistrar(t, tc.cfg, "", "greeter", "x", "10.0.0.1:1")
			t.Logf("Register() = %v", registerFails(t, reg))
		})
	}
	if got := getValue(t, e.client(t), "/services/greeter/x"); got != "" {
		t.Errorf("a failed registrar wrote %q", got)
	}

	t.Run("no plaintext fallback", func(t *testing.T) {
		plain := startEtcd(t)
		reg := newRegistrar(t, etcd.Config{Endpoints: []string{"https://" + plain.Endpoint()}, CACertFile: e.ca.CAFile}, "", "greeter", "x", "10.0.0.1:1")
		t.Logf("Register() = %v", registerFails(t, reg))
		if got := getValue(t, rawClient(t, plain.Endpoint()), "/services/greeter/x"); got != "" {
			t.Errorf("a TLS registrar wrote %q over plaintext", got)
		}
		// The resolver of a plain target with TLS from the environment
		// reports errors and publishes nothing.
		t.Setenv("ETCDCTL_CACERT", e.ca.CAFile)
		t.Cleanup(discovery.CloseIdleWatches) // after the resolver closes
		cc := buildResolver(t, "etcd://"+plain.Endpoint()+"/services/greeter")
		cc.Wait(t, "an error from a TLS resolver of a plaintext etcd", func(states []resolver.State, errs []error) bool {
			return len(states) > 0 || len(errs) > 0
		})
		if states := cc.States(); len(states) > 0 {
			t.Fatalf("the resolver published %v over plaintext", states)
		}
	})
}

// TestPlaintextAuth: ETCD_USERNAME and ETCD_PASSWORD over a connection
// without TLS are refused with an error that names the variables and not
// their values, unless allowed; over TLS they are fine.
func TestPlaintextAuth(t *testing.T) {
	clearSecurityEnv(t)
	password := plaintextPassword
	t.Setenv("ETCD_USERNAME", "lb")
	t.Setenv("ETCD_PASSWORD", password)
	inst := discovery.Instance{Service: "greeter", ID: "a", Address: "10.0.0.1:1"}
	refused := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, etcd.ErrPlaintextAuth) || !strings.Contains(err.Error(), "ETCD_PASSWORD") {
			t.Errorf("%s = %v, want ErrPlaintextAuth", what, err)
		}
		if err != nil && strings.Contains(err.Error(), password) {
			t.Errorf("%s error %q shows the password", what, err)
		}
	}
	_, err := etcd.Config{}.NewRegistrar(inst, "")
	refused("NewRegistrar()", err)
	_, err = etcd.Config{Endpoints: []string{"http://127.0.0.1:2379"}}.Target("greeter", "")
	refused("Target()", err)
	u, _ := url.Parse("etcd://127.0.0.1:2379/services/greeter")
	_, err = etcd.NewBuilder().Build(resolver.Target{URL: *u}, cctest.New(), resolver.BuildOptions{})
	refused("Build()", err)

	for _, tc := range []struct {
		name  string
		env   string
		cfg   etcd.Config
		isErr bool
	}{
		{"allowed by the environment", "1", etcd.Config{}, false},
		{"allowed by the Config", "", etcd.Config{AllowPlaintextAuth: true}, false},
		{"over TLS", "", etcd.Config{CACertFile: testpki.NewCA(t, "any").CAFile}, false},
		{"not allowed by a bad value", "yes please", etcd.Config{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("LB_ETCD_ALLOW_PLAINTEXT_AUTH", tc.env)
			reg, err := tc.cfg.NewRegistrar(inst, "")
			if (err != nil) != tc.isErr {
				t.Fatalf("NewRegistrar() = %v, want error %v", err, tc.isErr)
			}
			if err == nil {
				reg.Deregister(ctxT(t))
			}
		})
	}
}

// TestAuthOverTLS enables etcd's authentication: a registrar with the
// right password registers and deregisters over TLS (Deregister's requests
// use the client after the registrar's background context ended); one
// with a wrong password fails with an error that does not show it.
func TestAuthOverTLS(t *testing.T) {
	clearSecurityEnv(t)
	e := startTLSEtcd(t)
	c := e.client(t)
	password := tlsPassword
	ctx := ctxT(t)
	if _, err := c.UserAdd(ctx, "root", password); err != nil {
		t.Fatal(err)
	}
	if _, err := c.UserGrantRole(ctx, "root", "root"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AuthEnable(ctx); err != nil {
		t.Fatal(err)
	}
	t.Setenv("ETCD_USERNAME", "root")

	t.Run("wrong password", func(t *testing.T) {
		const wrong = "wrong-2b8c"
		t.Setenv("ETCD_PASSWORD", wrong)
		reg := newRegistrar(t, e.config(), "", "greeter", "a", "10.0.0.1:1")
		err := registerFails(t, reg)
		if strings.Contains(err.Error(), wrong) || strings.Contains(reg.Status().Error(), wrong) {
			t.Errorf("Register() = %v, Status() = %v: they show the password", err, reg.Status())
		}
		t.Logf("Register() = %v", err)
		// Stop the retries now: a password check in flight is not waited
		// for when the server stops.
		if err := reg.Deregister(ctxT(t)); err != nil {
			t.Errorf("Deregister() = %v", err)
		}
	})

	t.Setenv("ETCD_PASSWORD", password)
	reg := newRegistrar(t, e.config(), "", "greeter", "a", "10.0.0.1:1")
	if err := reg.Register(ctxT(t)); err != nil {
		t.Fatalf("Register() = %v", err)
	}
	// The test's client is root by its certificate's CN.
	if got := getValue(t, c, "/services/greeter/a"); !strings.Contains(got, "10.0.0.1:1") {
		t.Fatalf("value of /services/greeter/a = %q, want the instance's address", got)
	}
	if err := reg.Deregister(ctxT(t)); err != nil {
		t.Fatalf("Deregister() = %v", err)
	}
	if got := getValue(t, c, "/services/greeter/a"); got != "" {
		t.Fatalf("value of /services/greeter/a after Deregister = %q, want none", got)
	}
}

// TestDeregisterWhileConnecting: a registrar fetching an auth token from an
// endpoint that never answers stops at once when Register's context ends or
// Deregister is called, not after the client's dial timeout.
func TestDeregisterWhileConnecting(t *testing.T) {
	clearSecurityEnv(t)
	t.Setenv("ETCD_USERNAME", "root")
	t.Setenv("ETCD_PASSWORD", "pw")
	t.Setenv("LB_ETCD_ALLOW_PLAINTEXT_AUTH", "1")
	// A listener that accepts connections, holds them open and never
	// answers; accepted ticks at each connection.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn // guarded by mu
	)
	accepted := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
			select {
			case accepted <- struct{}{}:
			default:
			}
		}
	}()
	defer func() {
		l.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	}()
	// Well under the client's dial timeout (RequestTimeout).
	const quick = etcd.RequestTimeout / 2

	reg := newRegistrar(t, etcd.Config{}, l.Addr().String(), "greeter", "a", "10.0.0.1:1")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := reg.Register(ctx); err == nil {
		t.Fatal("Register() against a silent endpoint succeeded")
	}
	if d := time.Since(start); d > quick {
		t.Errorf("Register() with a 200ms context returned after %v", d)
	}

	// The keeper connects again in the background at once: Deregister
	// while it does (after a connection made since Register returned).
	select {
	case <-accepted:
	default:
	}
	select {
	case <-accepted:
	case <-time.After(timeout):
		t.Fatal("the registrar never connected again")
	}
	start = time.Now()
	if err := reg.Deregister(ctxT(t)); err != nil {
		t.Errorf("Deregister() = %v", err)
	}
	if d := time.Since(start); d > quick {
		t.Errorf("Deregister() while connecting took %v", d)
	}
	if err := reg.Status(); !errors.Is(err, etcd.ErrDeregistered) {
		t.Errorf("Status() after Deregister = %v, want ErrDeregistered", err)
	}
}

// TestBadCAKeepsTheLastState: a resolver with the CA and a client
// certificate reads a TLS etcd through a proxy; then the server behind the
// proxy's address becomes an impostor whose certificate, for the same
// address, comes from another CA. The resolver reports an error, keeps the
// last good state (no empty or other state is published), and every
// connection it makes to the impostor starts a TLS handshake, refused for
// the unknown authority: none is a plaintext retry. Back to the real etcd,
// it sees a registration made meanwhile.
func TestBadCAKeepsTheLastState(t *testing.T) {
	clearSecurityEnv(t)
	e := startTLSEtcd(t)
	other := testpki.NewCA(t, "other")
	impostorCert, impostorKey := other.Issue(t, "etcd-impostor", "127.0.0.1", "localhost")
	impostor := testpki.ServeHandshakes(t, impostorCert, impostorKey)
	p := startProxy(t, e.Endpoint())
	// After the resolver closes and before etcd stops: a TLS etcd waits
	// for open connections when it stops.
	t.Cleanup(discovery.CloseIdleWatches)

	if err := newRegistrar(t, e.config(), "", "greeter", "a", "10.0.0.1:1").Register(ctxT(t)); err != nil {
		t.Fatalf("Register(a) = %v", err)
	}
	cfg := etcd.Config{Endpoints: []string{p.Addr()}, CACertFile: e.ca.CAFile, CertFile: e.certFile, KeyFile: e.keyFile}
	spec, err := cfg.Spec("greeter", "")
	if err != nil {
		t.Fatal(err)
	}
	target, err := cfg.Target("greeter", "")
	if err != nil {
		t.Fatal(err)
	}
	cc := cctest.Build(t, discovery.SpecBuilder(etcd.Scheme, spec), target)
	cc.WaitAddrs(t, "10.0.0.1:1")
	good := len(cc.States())
	errsBefore := len(cc.Errors())

	p.Redirect(impostor.Addr)
	cc.Wait(t, "an error once the CA is bad", func(_ []resolver.State, errs []error) bool {
		return len(errs) > errsBefore
	})
	// The error says why: clientv3 reports only its deadline, and the
	// source explains it with the last failed handshake.
	reported := cc.Errors()[errsBefore]
	t.Logf("reported: %v", reported)
	var unknownCA x509.UnknownAuthorityError
	if !errors.As(reported, &unknownCA) || !strings.Contains(reported.Error(), "TLS handshake") {
		t.Errorf("the error %q does not name the failed TLS handshake and its unknown CA", reported)
	}
	// Retries too: each goes to the impostor over TLS.
	impostor.WaitConns(t, 3, timeout)
	cc.CheckStatesSince(t, good, "10.0.0.1:1") // after the CA went bad
	n := impostor.CheckRefused(t)
	t.Logf("the impostor saw %d TLS handshakes, none completed; 0 plaintext", n)

	if err := newRegistrar(t, e.config(), "", "greeter", "b", "10.0.0.1:2").Register(ctxT(t)); err != nil {
		t.Fatalf("Register(b) = %v", err)
	}
	p.Redirect(e.Endpoint())
	cc.WaitAddrs(t, "10.0.0.1:1", "10.0.0.1:2")
}

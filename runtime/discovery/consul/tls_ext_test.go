package consul_test

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/resolver"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/faultproxy"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/testpki"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/consul"
)

// startTLSHealthServer serves grpc.health.v1 over TLS only, with the
// certificate in certFile, reporting service as SERVING; it returns the
// address.
func startTLSHealthServer(t *testing.T, certFile, keyFile, service string) string {
	t.Helper()
	creds, err := credentials.NewServerTLSFromFile(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(creds))
	hs := health.NewServer()
	hs.SetServingStatus(service, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return lis.Addr().String()
}

// waitCheck waits, with blocking queries, until the agent's check of id
// satisfies cond, and returns it.
func waitCheck(t *testing.T, c *api.Client, service, id string, cond func(*api.HealthCheck) bool) *api.HealthCheck {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last *api.HealthCheck
	for index := uint64(0); ; {
		q := (&api.QueryOptions{WaitIndex: index, WaitTime: timeout}).WithContext(ctx)
		checks, meta, err := c.Health().Checks(service, q)
		if err != nil {
			t.Fatalf("check %s: %v (last seen: %+v)", id, err, last)
		}
		for _, chk := range checks {
			if chk.CheckID == id {
				last = chk
				if cond(chk) {
					return chk
				}
			}
		}
		index = max(meta.LastIndex, 1)
	}
}

// TestGRPCCheckOverTLS registers instances of a server that serves TLS
// with a certificate for "greeter.test" from a test CA, which the agent
// knows (enable_agent_tls_for_checks and tls.internal_rpc.ca_file): the
// TLS check with that server name passes, as does one that skips
// verification; a plaintext check, and a TLS check for another name, fail.
func TestGRPCCheckOverTLS(t *testing.T) {
	ca := testpki.NewCA(t, "consul-test")
	certFile, keyFile := ca.Issue(t, "greeter.test", "greeter.test")
	const healthService = "test.Greeter"
	addr := startTLSHealthServer(t, certFile, keyFile, healthService)
	// check_update_interval 0: a failing check's output reaches the
	// catalog (and the blocking query) at once, not minutes later.
	agent := startAgent(t, `enable_agent_tls_for_checks = true
tls { internal_rpc { ca_file = "`+ca.CAFile+`" } }
check_update_interval = "0s"`)
	c, err := api.NewClient(&api.Config{Address: agent.HTTPAddr()})
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		id         string
		cfg        consul.Config
		passing    bool
		wantOutput string // in the output of a failing check
	}{
		{"tls", consul.Config{GRPCUseTLS: true, TLSServerName: "greeter.test"}, true, ""},
		{"skip-verify", consul.Config{GRPCUseTLS: true, TLSSkipVerify: true}, true, ""},
		{"plaintext", consul.Config{}, false, "rpc error"},
		{"wrong-name", consul.Config{GRPCUseTLS: true, TLSServerName: "other.test"}, false, "other.test"},
	} {
		t.Run(tc.id, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Address = agent.HTTPAddr()
			cfg.CheckInterval = time.Second // Consul's minimum
			reg, err := cfg.NewRegistrar(discovery.Instance{Service: "greeter", ID: tc.id, Address: addr, HealthService: healthService}, "")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { reg.Deregister(context.Background()) })
			if err := reg.Register(context.Background()); err != nil {
				t.Fatalf("Register() = %v", err)
			}
			// A new check is critical until it first runs, with no output.
			chk := waitCheck(t, c, "greeter", tc.id+":grpc", func(chk *api.HealthCheck) bool {
				return chk.Status == api.HealthPassing || chk.Output != ""
			})
			if got := chk.Status == api.HealthPassing; got != tc.passing {
				t.Fatalf("check %s: status %s, output %q; want passing %v", chk.CheckID, chk.Status, chk.Output, tc.passing)
			}
			if !strings.Contains(chk.Output, tc.wantOutput) {
				t.Errorf("check %s: output %q, want it to contain %q", chk.CheckID, chk.Output, tc.wantOutput)
			}
			t.Logf("check %s: %s: %s", chk.CheckID, chk.Status, chk.Output)
		})
	}
}

// TestGRPCCheckOverTLSNeedsTheAgentsCA: an agent that does not know the
// test CA fails the TLS check: the CA reaches checks only through the
// agent's configuration.
func TestGRPCCheckOverTLSNeedsTheAgentsCA(t *testing.T) {
	ca := testpki.NewCA(t, "consul-test")
	certFile, keyFile := ca.Issue(t, "greeter.test", "greeter.test")
	addr := startTLSHealthServer(t, certFile, keyFile, "test.Greeter")
	agent := startAgent(t, `check_update_interval = "0s"`)
	c, err := api.NewClient(&api.Config{Address: agent.HTTPAddr()})
	if err != nil {
		t.Fatal(err)
	}
	cfg := consul.Config{Address: agent.HTTPAddr(), CheckInterval: time.Second, GRPCUseTLS: true, TLSServerName: "greeter.test"}
	reg, err := cfg.NewRegistrar(discovery.Instance{Service: "greeter", ID: "g1", Address: addr, HealthService: "test.Greeter"}, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Deregister(context.Background()) })
	if err := reg.Register(context.Background()); err != nil {
		t.Fatalf("Register() = %v", err)
	}
	chk := waitCheck(t, c, "greeter", "g1:grpc", func(chk *api.HealthCheck) bool {
		return chk.Status == api.HealthPassing || chk.Output != ""
	})
	if chk.Status == api.HealthPassing || !strings.Contains(chk.Output, "certificate signed by unknown authority") {
		t.Errorf("check %s: status %s, output %q; want critical, with an unknown authority", chk.CheckID, chk.Status, chk.Output)
	}
}

// TestTLSSettingsNeedGRPCUseTLS: the check's TLS settings without
// GRPCUseTLS are a mistake, refused.
func TestTLSSettingsNeedGRPCUseTLS(t *testing.T) {
	inst := discovery.Instance{Service: "greeter", ID: "g1", Address: "127.0.0.1:1", HealthService: "test.Greeter"}
	for _, cfg := range []consul.Config{{TLSServerName: "greeter.test"}, {TLSSkipVerify: true}} {
		if _, err := cfg.NewRegistrar(inst, ""); err == nil || !strings.Contains(err.Error(), "GRPCUseTLS") {
			t.Errorf("%+v.NewRegistrar() = %v, want an error naming GRPCUseTLS", cfg, err)
		}
	}
}

// newTLSFake is newFake serving HTTPS with the certificate in certFile.
func newTLSFake(t *testing.T, certFile, keyFile string, script ...reply) *fakeConsul {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeConsul{script: script, queried: make(chan struct{}, 10000), done: make(chan struct{})}
	f.Server = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	f.Server.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	f.Server.StartTLS()
	t.Cleanup(func() {
		close(f.done)
		f.Server.Close()
	})
	return f
}

// TestBadCAKeepsTheLastState: a resolver with Consul's TLS settings from
// the environment (CONSUL_HTTP_SSL, CONSUL_CACERT) reads an HTTPS Consul
// through a proxy; then the server behind the proxy's address becomes an
// impostor whose certificate, for the same address, comes from another CA.
// The resolver reports an error naming the unknown authority, keeps the
// last good state (no empty or other state is published), and every
// connection it makes to the impostor starts a TLS handshake: none is a
// plaintext retry. Back to Consul, it sees the new answer.
func TestBadCAKeepsTheLastState(t *testing.T) {
	ca := testpki.NewCA(t, "consul-test")
	certFile, keyFile := ca.Issue(t, "consul-server", "127.0.0.1", "localhost")
	other := testpki.NewCA(t, "other")
	impostorCert, impostorKey := other.Issue(t, "consul-impostor", "127.0.0.1", "localhost")
	impostor := testpki.ServeHandshakes(t, impostorCert, impostorKey)
	f := newTLSFake(t, certFile, keyFile, reply{index: 3, ports: []int{1}}) // then unchanged
	p, err := faultproxy.New(strings.TrimPrefix(f.URL, "https://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	t.Setenv("CONSUL_HTTP_ADDR", "")
	t.Setenv("CONSUL_HTTP_SSL", "true")
	t.Setenv("CONSUL_CACERT", ca.CAFile)

	cc := build(t, "consul://"+p.Addr()+"/svc", consul.WithRateLimit(1000, 10))
	cc.WaitAddrs(t, "10.0.0.1:1")
	good := len(cc.States())
	errsBefore := len(cc.Errors())

	p.Redirect(impostor.Addr)
	var reported error
	cc.Wait(t, "an error naming the unknown authority", func(_ []resolver.State, errs []error) bool {
		for _, err := range errs[errsBefore:] {
			if strings.Contains(err.Error(), "x509") {
				reported = err
				return true
			}
		}
		return false
	})
	t.Logf("reported: %v", reported)
	// Retries too: each goes to the impostor over TLS.
	impostor.WaitConns(t, 3, timeout)
	cc.CheckStatesSince(t, good, "10.0.0.1:1") // after the CA went bad
	n := impostor.CheckRefused(t)
	t.Logf("the impostor saw %d TLS handshakes, none completed; 0 plaintext", n)

	f.mu.Lock()
	f.script = []reply{{index: 4, ports: []int{1, 2}}}
	f.mu.Unlock()
	p.Redirect(strings.TrimPrefix(f.URL, "https://"))
	cc.WaitAddrs(t, "10.0.0.1:1", "10.0.0.1:2")
}

package helloworld_test

// mTLS end to end: the generated client and server with TLS credentials,
// instances found in a real etcd, and impostors registered beside them.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"maps"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/example/helloworld"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/testpki"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/lb"
)

// targetAuthority is the name a client of the proto's etcd discovery
// verifies when its credentials name none: the service's name from the
// proto (lb.Dial makes it the channel's authority), never something the
// registry holds.
const targetAuthority = helloworld.GreeterServiceName

// tlsGreeter is one greeter server of the mTLS test: over TLS with a
// certificate, or plaintext, registered in etcd through the generated
// helper. It counts what reaches it.
type tlsGreeter struct {
	helloworld.UnimplementedGreeterServer
	name     string
	addr     string
	calls    atomic.Int64 // SayHello calls
	rpcs     atomic.Int64 // every RPC, the health service's included
	accepted atomic.Int64 // TCP connections accepted
	acceptCh chan struct{}

	mu          sync.Mutex
	authorities map[string]int // :authority of the SayHello calls; guarded by mu
}

func (g *tlsGreeter) SayHello(ctx context.Context, req *helloworld.HelloRequest) (*helloworld.HelloReply, error) {
	g.calls.Add(1)
	md, _ := metadata.FromIncomingContext(ctx)
	g.mu.Lock()
	for _, a := range md.Get(":authority") {
		g.authorities[a]++
	}
	g.mu.Unlock()
	return &helloworld.HelloReply{Message: "Hello, " + req.GetName(), Backend: g.name}, nil
}

// authoritySeen returns the :authority values of the SayHello calls so far.
func (g *tlsGreeter) authoritySeen() map[string]int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return maps.Clone(g.authorities)
}

// waitAccepted waits until g has accepted more than n connections.
func (g *tlsGreeter) waitAccepted(t *testing.T, n int64) {
	t.Helper()
	deadline := time.NewTimer(testTimeout)
	defer deadline.Stop()
	for g.accepted.Load() <= n {
		select {
		case <-g.acceptCh:
		case <-deadline.C:
			t.Fatalf("%s (%s) accepted no connection within %v: the client never tried it", g.name, g.addr, testTimeout)
		}
	}
}

// countingListener counts the connections g accepts.
type countingListener struct {
	net.Listener
	g *tlsGreeter
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.g.accepted.Add(1)
		select {
		case l.g.acceptCh <- struct{}{}:
		default:
		}
	}
	return c, err
}

// startTLSGreeter starts g's server with creds (nil: plaintext) and
// registers it in the etcd at endpoint with md, through the generated
// helper; it is registered when startTLSGreeter returns and shut down when
// the test ends.
func startTLSGreeter(t *testing.T, name string, creds credentials.TransportCredentials, endpoint string, md discovery.Metadata) *tlsGreeter {
	t.Helper()
	g := &tlsGreeter{name: name, acceptCh: make(chan struct{}, 1), authorities: map[string]int{}}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g.addr = lis.Addr().String()
	opts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			g.rpcs.Add(1)
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			g.rpcs.Add(1)
			return h(srv, ss)
		}),
	}
	if creds != nil {
		opts = append(opts, grpc.Creds(creds))
	}
	s := grpc.NewServer(opts...)
	reg, err := helloworld.RegisterGreeterBalancedServer(s, g, lb.WithRegistryAddress(endpoint), lb.WithAdvertiseAddress(g.addr), lb.WithMetadata(md))
	if err != nil {
		lis.Close()
		t.Fatalf("RegisterGreeterBalancedServer(%s) = %v", name, err)
	}
	done := make(chan error, 1)
	go func() { done <- reg.Serve(countingListener{lis, g}) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		reg.Shutdown(ctx)
		select {
		case <-done:
		case <-ctx.Done():
			t.Errorf("%s still serving after Shutdown", name)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := reg.WaitRegistered(ctx); err != nil {
		t.Fatalf("%s not registered: %v", name, err)
	}
	return g
}

// pki is the test's certificate authority and what it issued.
type pki struct {
	ca   *testpki.CA
	pool *x509.CertPool
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	ca := testpki.NewCA(t, "greeter-ca")
	pem, err := os.ReadFile(ca.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("no certificate in the CA file")
	}
	return &pki{ca: ca, pool: pool}
}

// cert issues a certificate for cn (a server certificate for hosts, if
// any) and loads it.
func (p *pki) cert(t *testing.T, cn string, hosts ...string) tls.Certificate {
	t.Helper()
	certFile, keyFile := p.ca.Issue(t, cn, hosts...)
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// serverCreds serves with cert and requires a client certificate of the CA.
func (p *pki) serverCreds(cert tls.Certificate) credentials.TransportCredentials {
	return credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    p.pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	})
}

// clientCreds trusts the CA, verifies serverName ("": gRPC's default,
// the channel's authority) and presents certs.
func (p *pki) clientCreds(serverName string, certs ...tls.Certificate) credentials.TransportCredentials {
	return credentials.NewTLS(&tls.Config{RootCAs: p.pool, Certificates: certs, ServerName: serverName, MinVersion: tls.VersionTLS12})
}

// countKeys returns how many keys etcd at endpoint holds under prefix.
func countKeys(t *testing.T, endpoint, prefix string) int64 {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: testTimeout, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	resp, err := c.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatalf("counting the keys under %s: %v", prefix, err)
	}
	return resp.Count
}

// TestMutualTLS: three greeters serve mTLS with certificates for
// "greeter.test" (and the channel's default authority) from the test CA;
// two impostors are registered beside them in the same etcd, under the
// same service: one with a certificate of the same CA for another name
// (and for its own IP address), one serving plaintext; both publish
// metadata naming their own name as the server name. A client with a
// client certificate, verifying the name from the caller
// (tls.Config.ServerName) or, without one, the name from the target
// (the proto's prefix and service), makes 300 calls: every one succeeds
// and is served by the three, round robin; the impostors, which the client
// did dial, get no call and no RPC at all. A client without a certificate
// is rejected by every greeter and reaches no handler.
func TestMutualTLS(t *testing.T) {
	endpoint := startEtcd(t)
	// Before etcd stops: the clients' shared watch lingers after they close.
	t.Cleanup(discovery.CloseIdleWatches)
	p := newPKI(t)
	var valid []*tlsGreeter
	for _, name := range []string{"greeter-1", "greeter-2", "greeter-3"} {
		valid = append(valid, startTLSGreeter(t, name, p.serverCreds(p.cert(t, name, "greeter.test", targetAuthority)), endpoint, discovery.Metadata{}))
	}
	// What an impostor may write in the registry: it chooses nothing.
	claim := discovery.Metadata{Custom: map[string]string{"ServerName": "impostor.test", "server_name": "impostor.test", "authority": "impostor.test"}}
	// Its certificate is the CA's, for another name and for the very
	// address the registry gives: the address is not the name verified.
	impostor := startTLSGreeter(t, "impostor", p.serverCreds(p.cert(t, "impostor", "impostor.test", "127.0.0.1")), endpoint, claim)
	plaintext := startTLSGreeter(t, "plaintext-impostor", nil, endpoint, claim)
	impostors := []*tlsGreeter{impostor, plaintext}
	if n := countKeys(t, endpoint, "/services/"+helloworld.GreeterServiceName+"/"); n != 5 {
		t.Fatalf("%d instances in etcd, want 5 (3 greeters, 2 impostors)", n)
	}
	clientCert := p.cert(t, "greeter-client")

	const calls = 300
	for _, tc := range []struct {
		name       string
		serverName string // in the client's tls.Config
		authority  string // the :authority, and the name verified
	}{
		{"name from the caller", "greeter.test", "greeter.test"},
		{"name from the proto", "", targetAuthority},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := make([]int64, len(impostors))
			for i, g := range impostors {
				before[i] = g.accepted.Load()
			}
			c, err := helloworld.NewGreeterBalancedClient(context.Background(), lb.WithRegistryAddress(endpoint), lb.WithTransportCredentials(p.clientCreds(tc.serverName, clientCert)))
			if err != nil {
				t.Fatalf("NewGreeterBalancedClient() = %v", err)
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			// Until all three answer; no call may fail, these neither.
			warm := 0
			for seen := map[string]bool{}; len(seen) < len(valid); {
				warm++
				reply, err := c.SayHello(ctx, &helloworld.HelloRequest{Name: "warm"})
				if err != nil {
					t.Fatalf("warm-up call %d: SayHello() = %v", warm, err)
				}
				seen[reply.GetBackend()] = true
			}
			// The client has the impostors' addresses and dials them.
			for i, g := range impostors {
				g.waitAccepted(t, before[i])
			}
			validCalls := make([]int64, len(valid))
			for i, g := range valid {
				validCalls[i] = g.calls.Load()
			}
			got := count(t, c, calls)
			for i, g := range valid {
				if n := got[g.name]; n < calls/3*9/10 || n > calls/3*11/10 || int64(n) != g.calls.Load()-validCalls[i] {
					t.Errorf("%s answered %d of %d calls and counted %d, want 100±10%% (all: %v)", g.name, n, calls, g.calls.Load()-validCalls[i], got)
				}
				if a := g.authoritySeen(); len(a) != 1 || a[tc.authority] == 0 {
					t.Errorf("%s saw :authority %v, want only %q", g.name, a, tc.authority)
				}
			}
			if len(got) != len(valid) {
				t.Errorf("calls went to %v, want the 3 greeters only", got)
			}
			t.Logf("%d warm-up calls, then %d calls: %v; the impostors accepted %d and %d connections", warm, calls, got, impostor.accepted.Load()-before[0], plaintext.accepted.Load()-before[1])
			for _, g := range valid {
				g.mu.Lock()
				clear(g.authorities)
				g.mu.Unlock()
			}
		})
	}
	for _, g := range impostors {
		if n, r := g.calls.Load(), g.rpcs.Load(); n != 0 || r != 0 {
			t.Errorf("%s got %d calls and %d RPCs, want none", g.name, n, r)
		}
	}

	t.Run("no client certificate", func(t *testing.T) {
		accepted := make([]int64, len(valid))
		served := make([]int64, len(valid))
		rpcs := make([]int64, len(valid))
		for i, g := range valid {
			accepted[i], served[i], rpcs[i] = g.accepted.Load(), g.calls.Load(), g.rpcs.Load()
		}
		c, err := helloworld.NewGreeterBalancedClient(context.Background(), lb.WithRegistryAddress(endpoint), lb.WithTransportCredentials(p.clientCreds("greeter.test")))
		if err != nil {
			t.Fatalf("NewGreeterBalancedClient() = %v", err)
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		for i := range 10 {
			_, err := c.SayHello(ctx, &helloworld.HelloRequest{Name: "anonymous"})
			// The error is the last connection failure of any of the five:
			// a handshake refused, or the greeter closing the connection
			// on the client's first write (TLS 1.3 finishes the client's
			// side of the handshake before the server checks it).
			if status.Code(err) != codes.Unavailable {
				t.Fatalf("call %d without a client certificate = %v, want UNAVAILABLE", i, err)
			}
			if i == 0 {
				t.Logf("a call without a client certificate: %v", err)
			}
		}
		// Every greeter was dialled, and turned the client away before
		// any handler, the health service's included.
		for i, g := range valid {
			g.waitAccepted(t, accepted[i])
			if n, r := g.calls.Load()-served[i], g.rpcs.Load()-rpcs[i]; n != 0 || r != 0 {
				t.Errorf("%s served %d calls and %d RPCs of a client without a certificate", g.name, n, r)
			}
		}
	})
	for _, g := range impostors {
		if n, r := g.calls.Load(), g.rpcs.Load(); n != 0 || r != 0 {
			t.Errorf("%s got %d calls and %d RPCs, want none", g.name, n, r)
		}
	}
}

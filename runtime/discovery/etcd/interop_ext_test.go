package etcd_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/go-kit/kit/sd/etcdv3"
	"github.com/go-kit/log"
	"go.etcd.io/etcd/client/v3/naming/endpoints"
	etcdnaming "go.etcd.io/etcd/client/v3/naming/resolver"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/resolver"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/etcd"
)

// TestEtcdNamingResolverFindsOurRegistrations: a server registered by our
// registrar is reachable through etcd's own client/v3/naming resolver.
func TestEtcdNamingResolverFindsOurRegistrations(t *testing.T) {
	s := startEtcd(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(lis)
	defer srv.Stop()
	register(t, etcd.Config{}, s.Endpoint(), "interop", "ours", lis.Addr().String())

	rb, err := etcdnaming.NewBuilder(rawClient(t, s.Endpoint()))
	if err != nil {
		t.Fatal(err)
	}
	// etcd's resolver drops one leading '/' of the target's path: our keys
	// start with '/', so its target has four.
	conn, err := grpc.NewClient("etcd:////services/interop", grpc.WithResolvers(rb), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := healthpb.NewHealthClient(conn).Check(ctxT(t), &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("Check through etcd's naming resolver = %v", err)
	}
}

// TestWeFindOtherRegistrars: our resolver reads instances written by etcd's
// naming/endpoints.Manager (JSON with metadata) and by go-kit's sd/etcdv3
// Registrar (plain values).
func TestWeFindOtherRegistrars(t *testing.T) {
	s := startEtcd(t)
	c := rawClient(t, s.Endpoint())
	m, err := endpoints.NewManager(c, "/services/mixed")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.AddEndpoint(ctxT(t), "/services/mixed/manager-1", endpoints.Endpoint{Addr: "10.0.0.1:1", Metadata: map[string]any{"weight": 5}}); err != nil {
		t.Fatal(err)
	}
	stopKit := goKitRegistrar(t, s.Endpoint(), "/services/mixed/gokit-1", "10.0.0.2:2")

	cc := buildResolver(t, "etcd://"+s.Endpoint()+"/services/mixed")
	st := cc.WaitAddrs(t, "10.0.0.1:1", "10.0.0.2:2")
	if md, ok := discoveryMetadata(st.Endpoints[0]); !ok || md.Weight != 5 {
		t.Errorf("metadata of the manager's endpoint = %+v, %v; want weight 5", md, ok)
	}

	if err := m.DeleteEndpoint(ctxT(t), "/services/mixed/manager-1"); err != nil {
		t.Fatal(err)
	}
	cc.WaitAddrs(t, "10.0.0.2:2")
	stopKit()
	// Every key gone: the default failure policy keeps the last good set
	// and reports why.
	cc.Wait(t, "no instances reported", func(_ []resolver.State, errs []error) bool {
		return len(errs) > 0 && errors.Is(errs[len(errs)-1], discovery.ErrNoInstances)
	})
	cc.WaitAddrs(t, "10.0.0.2:2")
}

// goKitRegistrar registers key=value with go-kit's sd/etcdv3 Registrar in a
// child process (go-kit's client cannot be closed, so its goroutines would
// leak here); the returned func makes the child deregister and waits.
func goKitRegistrar(t *testing.T, endpoint, key, value string) func() {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "LB_GOKIT_REGISTRAR="+endpoint+" "+key+" "+value)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "registered\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("go-kit registrar: %q, %v", line, err)
	}
	return func() {
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			t.Errorf("go-kit registrar: %v", err)
		}
	}
}

// runGoKitRegistrar is the child of goKitRegistrar: it registers, says so,
// and deregisters when its stdin closes.
func runGoKitRegistrar(spec string) {
	f := strings.Fields(spec)
	kit, err := etcdv3.NewClient(context.Background(), []string{f[0]}, etcdv3.ClientOptions{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	reg := etcdv3.NewRegistrar(kit, etcdv3.Service{Key: f[1], Value: f[2]}, log.NewNopLogger())
	reg.Register()
	fmt.Println("registered")
	io.Copy(io.Discard, os.Stdin)
	reg.Deregister()
	os.Exit(0)
}

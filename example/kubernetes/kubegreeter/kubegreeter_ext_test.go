package kubegreeter_test

// End-to-end through the generated helpers on Kubernetes: servers made by
// RegisterGreeterBalancedServer, found by NewGreeterBalancedClient in the
// EndpointSlices of a real kube-apiserver; and the health service as
// Kubernetes' gRPC readiness probe asks it.

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/example/helloworld"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/example/kubernetes/kubegreeter"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/kubeapiserver"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/resolvertest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/lb"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(mainM{m}, goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run"))
}

type mainM struct{ m *testing.M }

func (c mainM) Run() int {
	code := c.m.Run()
	discovery.CloseIdleWatches()
	return code
}

type greeter struct {
	kubegreeter.UnimplementedGreeterServer
	name    string
	hold    chan struct{} // a call for "slow" waits for it to close
	holding chan struct{} // and sends on this when it starts to wait
}

func (g *greeter) SayHello(ctx context.Context, req *helloworld.HelloRequest) (*helloworld.HelloReply, error) {
	if req.GetName() == "slow" {
		g.holding <- struct{}{}
		select {
		case <-g.hold:
		case <-ctx.Done():
		}
	}
	return &helloworld.HelloReply{Message: "Hello, " + req.GetName(), Backend: g.name}, nil
}

// server is one greeter on loopback.
type server struct {
	addr string
	reg  *lb.Registration
	g    *greeter
}

func startServer(t *testing.T, name string) *server {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &greeter{name: name, hold: make(chan struct{}), holding: make(chan struct{}, 1)}
	s := grpc.NewServer(kubegreeter.GreeterServerOptions()...)
	reg, err := kubegreeter.RegisterGreeterBalancedServer(s, g)
	if err != nil {
		t.Fatalf("RegisterGreeterBalancedServer: %v", err)
	}
	go reg.Serve(lis)
	t.Cleanup(func() { reg.Shutdown(context.Background()) })
	return &server{addr: lis.Addr().String(), reg: reg, g: g}
}

// TestGeneratedClient: the generated client of kubegreeter.proto (Service
// "greeter", port "grpc", the namespace of the kubeconfig's context) calls
// every ready endpoint of the Service's slice, and stops calling one that
// is no longer ready.
func TestGeneratedClient(t *testing.T) {
	dir := t.TempDir()
	api, err := kubeapiserver.Start(dir)
	if err == kubeapiserver.ErrNoBinary && os.Getenv("LB_REQUIRE_TOOLS") == "" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(api.Stop)
	const ns = "greeting"
	admin := adminClient(t, api)
	ctx, cancel := context.WithTimeout(context.Background(), resolvertest.Timeout)
	defer cancel()
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The documentation addresses of the slice, each mapped to a greeter.
	d := &dialer{to: map[string]string{}}
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "greeter-abc", Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: "greeter"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("grpc"), Port: ptr(int32(50051))}},
	}
	for i := range 3 {
		ip := "198.51.100." + strconv.Itoa(i+1)
		s := startServer(t, ip)
		d.to[ip+":50051"] = s.addr
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}})
	}
	slices := admin.DiscoveryV1().EndpointSlices(ns)
	if es, err = slices.Create(ctx, es, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := api.Kubeconfig(kubeapiserver.Admin, ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBECONFIG", kubeconfig)
	c, err := kubegreeter.NewGreeterBalancedClient(ctx, lb.WithInsecure(), lb.WithBlock(), lb.WithDialOptions(grpc.WithContextDialer(d.dial)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resolvertest.WaitWatch(t, "kubernetes", ns+"/greeter", func(w discovery.WatchInfo) bool { return w.Instances == 3 })
	if got := spread(t, c, 90); len(got) != 3 {
		t.Fatalf("calls went to %v, want all 3 endpoints", got)
	}
	// One no longer ready: it gets no more calls.
	es.Endpoints[2].Conditions.Ready = ptr(false)
	if _, err := slices.Update(ctx, es, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	resolvertest.WaitWatch(t, "kubernetes", ns+"/greeter", func(w discovery.WatchInfo) bool { return w.Instances == 2 })
	// The channel gets the watch's view in its own time: calls until 60
	// in a row leave the one not ready alone.
	deadline := time.Now().Add(resolvertest.Timeout)
	for {
		got := spread(t, c, 60)
		if len(got) == 2 && got["198.51.100.3"] == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("one not ready: calls still went to %v after %v, want the 2 ready ones", got, resolvertest.Timeout)
		}
	}
}

// TestReadinessProbe asks the health service what Kubernetes' gRPC probe
// (and grpc-health-probe) asks, on a new connection each time: service ""
// (the probe's default) and the proto service's name are SERVING while the
// server serves; once Shutdown starts, a client watching the health is told
// NOT_SERVING and the probe fails (NOT_SERVING, or the connection refused
// once the listener is closed), while a call in flight still finishes.
func TestReadinessProbe(t *testing.T) {
	s := startServer(t, "probed")
	for _, svc := range []string{"", "kubegreeter.Greeter"} {
		if st, err := probe(s.addr, svc); err != nil || st != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("probe(%q) = %v, %v; want SERVING", svc, st, err)
		}
	}
	// A call in flight holds the graceful stop.
	conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	inFlight := make(chan error, 1)
	go func() {
		_, err := kubegreeter.NewGreeterClient(conn).SayHello(context.Background(), &helloworld.HelloRequest{Name: "slow"})
		inFlight <- err
	}()
	select {
	case <-s.g.holding:
	case err := <-inFlight:
		t.Fatalf("the held call: %v", err)
	}
	// A client watching the server's health (as the balanced clients do)
	// is told NOT_SERVING.
	wctx, wcancel := context.WithCancel(context.Background())
	defer wcancel()
	watch, err := healthpb.NewHealthClient(conn).Watch(wctx, &healthpb.HealthCheckRequest{Service: ""})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := watch.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health Watch: %v, %v; want SERVING", r.GetStatus(), err)
	}
	shutdown := make(chan error, 1)
	go func() { shutdown <- s.reg.Shutdown(context.Background()) }()
	if r, err := watch.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health Watch after Shutdown: %v, %v; want NOT_SERVING", r.GetStatus(), err)
	}
	deadline := time.Now().Add(resolvertest.Timeout)
	for {
		st, err := probe(s.addr, "")
		if err != nil || st != healthpb.HealthCheckResponse_SERVING {
			t.Logf("after Shutdown began the probe got %v, %v", st, err)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the probe still passes %v after Shutdown began", resolvertest.Timeout)
		}
	}
	close(s.g.hold)
	if err := <-inFlight; err != nil {
		t.Errorf("the call in flight failed: %v", err)
	}
	if err := <-shutdown; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// probe is one readiness probe: a new connection, one Check with a 1 s
// deadline (the probe's default timeout), closed after.
func probe(addr, service string) (healthpb.HealthCheckResponse_ServingStatus, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	r, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		return 0, err
	}
	return r.GetStatus(), nil
}

func spread(t *testing.T, c *kubegreeter.GreeterBalancedClient, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), resolvertest.Timeout)
		r, err := c.SayHello(ctx, &helloworld.HelloRequest{Name: "kubernetes"})
		cancel()
		if err != nil {
			t.Fatalf("SayHello: %v", err)
		}
		got[r.GetBackend()]++
	}
	return got
}

func adminClient(t *testing.T, api *kubeapiserver.Server) k8s.Interface {
	t.Helper()
	path, err := api.Kubeconfig(kubeapiserver.Admin, "")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := k8s.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// dialer maps the slice's documentation addresses to the loopback
// greeters and refuses any other address.
type dialer struct {
	mu sync.Mutex
	to map[string]string
}

func (d *dialer) dial(ctx context.Context, addr string) (net.Conn, error) {
	d.mu.Lock()
	to, ok := d.to[addr]
	d.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("test dialer: %s is not a test greeter: refused", addr)
	}
	return (&net.Dialer{}).DialContext(ctx, "tcp", to)
}

func ptr[T any](v T) *T { return &v }

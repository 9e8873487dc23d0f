package kubernetes_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/kubeapiserver"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/resolvertest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/testbackend"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/kubernetes"
)

// One kube-apiserver (and its etcd) for the package's tests, started by
// the first test that needs it; each test works in a namespace of its own.
var (
	apiOnce   sync.Once
	api       *kubeapiserver.Server
	apiErr    error
	apiDir    string
	nsCounter atomic.Int64
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(mainM{m},
		// klog's flush daemon, started when client-go is linked.
		goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run"),
		goleak.IgnoreAnyFunction("k8s.io/apimachinery/pkg/util/wait.BackoffUntilWithContext.func1"),
	)
}

type mainM struct{ m *testing.M }

func (c mainM) Run() int {
	code := c.m.Run()
	discovery.CloseIdleWatches()
	if api != nil {
		api.Stop()
	}
	if apiDir != "" {
		os.RemoveAll(apiDir)
	}
	return code
}

// env is one test's namespace on the shared API server, with an admin
// client and the dialer that maps the slices' documentation addresses to
// the test's loopback backends.
type env struct {
	t      testing.TB
	ns     string
	admin  k8s.Interface
	dialer *dialer
	// kubeconfig is the admin's kubeconfig; clientConfig lb-client's.
	kubeconfig, clientConfig string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	apiOnce.Do(func() {
		if apiDir, apiErr = os.MkdirTemp("", "kubeapiserver"); apiErr != nil {
			return
		}
		api, apiErr = kubeapiserver.Start(apiDir)
	})
	if apiErr == kubeapiserver.ErrNoBinary && os.Getenv("LB_REQUIRE_TOOLS") == "" {
		t.Skip(apiErr)
	}
	if apiErr != nil {
		t.Fatal(apiErr)
	}
	e := &env{t: t, ns: "test-" + strconv.FormatInt(nsCounter.Add(1), 10), dialer: newDialer()}
	var err error
	if e.kubeconfig, err = api.Kubeconfig(kubeapiserver.Admin, ""); err != nil {
		t.Fatal(err)
	}
	if e.clientConfig, err = api.Kubeconfig(kubeapiserver.Client, ""); err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", e.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 1000, 1000
	if e.admin, err = k8s.NewForConfig(cfg); err != nil {
		t.Fatal(err)
	}
	ctx := e.ctx()
	if _, err := e.admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: e.ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), resolvertest.Timeout)
	e.t.Cleanup(cancel)
	return ctx
}

// allowClient binds lb-client a Role with verbs on endpointslices in the
// test's namespace.
func (e *env) allowClient(verbs ...string) {
	e.t.Helper()
	ctx := e.ctx()
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "lb-client"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: verbs}}}
	roles := e.admin.RbacV1().Roles(e.ns)
	if _, err := roles.Get(ctx, role.Name, metav1.GetOptions{}); err == nil {
		if _, err := roles.Update(ctx, role, metav1.UpdateOptions{}); err != nil {
			e.t.Fatal(err)
		}
		return
	}
	if _, err := roles.Create(ctx, role, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "lb-client"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "lb-client"},
		Subjects: []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: kubeapiserver.Client}}}
	if _, err := e.admin.RbacV1().RoleBindings(e.ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

// ep is one endpoint of a slice.
type ep struct {
	b                           *testbackend.Backend
	ip                          string // its documentation address
	ready, serving, terminating bool
	zone, node                  string
}

// port is the pods' port every test slice lists, named "grpc".
const port = 50051

// backends starts n backends with the addresses 198.51.100.<first+i>, ready.
func (e *env) backends(first, n int) []ep {
	var eps []ep
	for i := range n {
		b := testbackend.Start(e.t)
		ip := "198.51.100." + strconv.Itoa(first+i)
		e.dialer.add(net.JoinHostPort(ip, strconv.Itoa(port)), b.Addr)
		eps = append(eps, ep{b: b, ip: ip, ready: true, serving: true})
	}
	return eps
}

// slice returns an EndpointSlice of service svc named name with eps.
func (e *env) slice(svc, name string, typ discoveryv1.AddressType, eps []ep) *discoveryv1.EndpointSlice {
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name, Namespace: e.ns, Labels: map[string]string{discoveryv1.LabelServiceName: svc, discoveryv1.LabelManagedBy: "lb-test"}},
		AddressType: typ,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("grpc"), Port: ptr(int32(port)), Protocol: ptr(corev1.ProtocolTCP)}},
	}
	for _, p := range eps {
		x := discoveryv1.Endpoint{Addresses: []string{p.ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(p.ready), Serving: ptr(p.serving), Terminating: ptr(p.terminating)}}
		if p.zone != "" {
			x.Zone = ptr(p.zone)
		}
		if p.node != "" {
			x.NodeName = ptr(p.node)
		}
		es.Endpoints = append(es.Endpoints, x)
	}
	return es
}

// put creates or replaces a slice, and returns when the API server took it.
func (e *env) put(es *discoveryv1.EndpointSlice) {
	e.t.Helper()
	ctx := e.ctx()
	c := e.admin.DiscoveryV1().EndpointSlices(e.ns)
	old, err := c.Get(ctx, es.Name, metav1.GetOptions{})
	if err == nil {
		es.ResourceVersion = old.ResourceVersion
		_, err = c.Update(ctx, es, metav1.UpdateOptions{})
	} else {
		_, err = c.Create(ctx, es, metav1.CreateOptions{})
	}
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) deleteSlice(name string) {
	e.t.Helper()
	if err := e.admin.DiscoveryV1().EndpointSlices(e.ns).Delete(e.ctx(), name, metav1.DeleteOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

// dial returns a channel to target through the test dialer.
func (e *env) dial(target string, opts ...grpc.DialOption) *grpc.ClientConn {
	e.t.Helper()
	c, err := grpc.NewClient(target, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(e.dialer.dial),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`)}, opts...)...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	c.Connect() // build the resolver now, not at the first call
	return c
}

// target is the kubernetes target of svc in the test's namespace, with
// the admin's kubeconfig.
func (e *env) target(svc string) string {
	return "kubernetes:///" + svc + "." + e.ns + ":grpc?kubeconfig=" + e.kubeconfig
}

// waitInstances waits until the watch of svc holds exactly addrs (any
// order) and returns when that happened.
func (e *env) waitInstances(svc string, ips ...string) discovery.WatchInfo {
	e.t.Helper()
	want := map[string]bool{}
	for _, ip := range ips {
		want[net.JoinHostPort(ip, strconv.Itoa(port))] = true
	}
	return resolvertest.WaitWatch(e.t, kubernetes.Scheme, e.ns+"/"+svc, func(w discovery.WatchInfo) bool {
		if len(w.Endpoints) != len(want) {
			return false
		}
		for _, in := range w.Endpoints {
			if !want[in.Address] {
				return false
			}
		}
		return true
	})
}

// dialer maps the slices' documentation addresses to loopback backends,
// and refuses every other address: no packet of a test leaves loopback.
type dialer struct {
	mu sync.Mutex
	to map[string]string // "198.51.100.1:50051" -> "127.0.0.1:port"
}

func newDialer() *dialer { return &dialer{to: map[string]string{}} }

func (d *dialer) add(from, to string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.to[from] = to
}

func (d *dialer) dial(ctx context.Context, addr string) (net.Conn, error) {
	d.mu.Lock()
	to, ok := d.to[addr]
	d.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("test dialer: %s is not a test backend: refused", addr)
	}
	return (&net.Dialer{}).DialContext(ctx, "tcp", to)
}

func ptr[T any](v T) *T { return &v }

// settle makes calls through c until 50 in a row succeed and reach only
// eps, as the channel applies the state its watch has (the watch's view
// comes first); calls may fail meanwhile (a channel told of an error).
func settle(t *testing.T, c grpc.ClientConnInterface, eps ...ep) {
	t.Helper()
	want := map[string]bool{}
	for _, p := range eps {
		want[p.b.Addr] = true
	}
	deadline := time.Now().Add(resolvertest.Timeout)
	var last string
	for ok := 0; ok < 50; {
		if time.Now().After(deadline) {
			t.Fatalf("calls do not settle on %d endpoints within %v: last %s", len(eps), resolvertest.Timeout, last)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		var p peer.Peer
		_, err := healthpb.NewHealthClient(c).Check(ctx, &healthpb.HealthCheckRequest{Service: "count"}, grpc.Peer(&p))
		cancel()
		switch {
		case err != nil:
			ok, last = 0, err.Error()
		case !want[p.Addr.String()]:
			ok, last = 0, "a call to "+p.Addr.String()
		default:
			ok++
		}
	}
}

// calls makes n calls through c and returns how many each backend took;
// every call must succeed.
func calls(t *testing.T, c grpc.ClientConnInterface, n int, eps []ep) map[string]int64 {
	t.Helper()
	before := map[string]int64{}
	for _, p := range eps {
		before[p.ip] = p.b.Calls.Load()
	}
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), resolvertest.Timeout)
		err := testbackend.Call(ctx, c)
		cancel()
		if err != nil {
			t.Fatalf("call: %v", err)
		}
	}
	got := map[string]int64{}
	for _, p := range eps {
		if d := p.b.Calls.Load() - before[p.ip]; d > 0 {
			got[p.ip] = d
		}
	}
	return got
}

package kubernetes_test

import (
	"context"
	"math"
	"testing"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/resolvertest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/testbackend"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/kubernetes"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/lb"
)

// TestZoneAware: 9 endpoints in 3 zones, as the slices give them
// (endpoints[].zone), and a client of zone a under ZoneAware: at least
// 99% of the calls stay in zone a; with zone a's endpoints not ready,
// calls go to b and c; when they are ready again, back to a.
func TestZoneAware(t *testing.T) {
	e := newEnv(t)
	eps := e.backends(91, 9)
	zoneOf := map[string]string{}
	for i := range eps {
		eps[i].zone = string(rune('a' + i/3))
		zoneOf[eps[i].b.Addr] = eps[i].zone
	}
	e.put(e.slice("zoned", "zoned-a", discoveryv1.AddressTypeIPv4, eps))
	svc := &lb.Service{Name: "zoned", FullName: testbackend.EchoService, ZoneAware: &lb.ZoneAware{},
		Discovery: kubernetes.Config{Namespace: e.ns, Port: "grpc", Kubeconfig: e.kubeconfig}}
	ctx, cancel := context.WithTimeout(context.Background(), resolvertest.Timeout)
	defer cancel()
	c, err := lb.Dial(ctx, svc, lb.WithInsecure(), lb.WithBlock(), lb.WithLocality("a", ""), lb.WithDialOptions(grpc.WithContextDialer(e.dialer.dial)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w := resolvertest.WaitWatch(t, kubernetes.Scheme, e.ns+"/zoned", func(w discovery.WatchInfo) bool { return w.Instances == 9 })
	for _, in := range w.Endpoints {
		if in.Metadata.Zone == "" {
			t.Fatalf("%s has no zone", in.Address)
		}
	}
	shares := func(n int) map[string]float64 {
		got := map[string]float64{}
		for range n {
			ctx, cancel := context.WithTimeout(context.Background(), resolvertest.Timeout)
			var p peer.Peer
			_, err := healthpb.NewHealthClient(c).Check(ctx, &healthpb.HealthCheckRequest{Service: "count"}, grpc.Peer(&p))
			cancel()
			if err != nil {
				t.Fatalf("call: %v", err)
			}
			got[zoneOf[p.Addr.String()]] += 1 / float64(n)
		}
		return got
	}
	// waitShare calls until zone z's share of 100 calls is want (all or
	// nothing).
	waitShare := func(z string, want float64) {
		for range 200 {
			if got := shares(100); math.Abs(got[z]-want) < 1e-9 {
				return
			}
		}
		t.Fatalf("zone %s's share never reached %v: %v", z, want, shares(100))
	}
	waitShare("a", 1)
	if got := shares(1000); got["a"] < 0.99 {
		t.Errorf("all ready: zone a took %.3f, want at least 0.99 (%v)", got["a"], got)
	}
	for i := range 3 {
		eps[i].ready = false
	}
	e.put(e.slice("zoned", "zoned-a", discoveryv1.AddressTypeIPv4, eps))
	waitShare("a", 0)
	got := shares(300)
	t.Logf("zone a not ready: %v", got)
	if got["b"] == 0 || got["c"] == 0 {
		t.Errorf("zone a not ready: calls went to %v, want b and c", got)
	}
	for i := range 3 {
		eps[i].ready = true
	}
	e.put(e.slice("zoned", "zoned-a", discoveryv1.AddressTypeIPv4, eps))
	waitShare("a", 1)
}

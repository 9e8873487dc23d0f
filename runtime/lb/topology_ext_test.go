package lb_test

import (
	"context"
	"math"
	"net"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/consulagent"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/etcdserver"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/resolvertest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/testbackend"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/consul"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/etcd"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/static"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/lb"
)

// zonedServer is a server registered through lb.Register in a zone.
type zonedServer struct {
	addr string
	zone string
	reg  *lb.Registration
}

// startZoned registers 9 servers of svc, 3 in each of the zones a, b and
// c of region r, each with lb.WithLocality, and waits until they are in
// the registry.
func startZoned(t *testing.T, svc *lb.Service, registry string) []*zonedServer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), resolvertest.Timeout)
	defer cancel()
	var ss []*zonedServer
	for i := range 9 {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s := grpc.NewServer()
		zone := string(rune('a' + i/3))
		r, err := lb.Register(s, svc, &grpc.ServiceDesc{ServiceName: svc.FullName, HandlerType: (*any)(nil)}, struct{}{},
			lb.WithAdvertiseAddress(lis.Addr().String()), lb.WithRegistryAddress(registry), lb.WithLocality(zone, "r"))
		if err != nil {
			t.Fatal(err)
		}
		go r.Serve(lis)
		t.Cleanup(func() { r.Shutdown(context.Background()) })
		if err := r.WaitRegistered(ctx); err != nil {
			t.Fatal(err)
		}
		ss = append(ss, &zonedServer{addr: lis.Addr().String(), zone: zone, reg: r})
	}
	return ss
}

// zoneShares makes n health checks of svc through c, in sequence, and
// returns each zone's share of them; none may fail.
func zoneShares(t *testing.T, c grpc.ClientConnInterface, svc *lb.Service, ss []*zonedServer, n int) map[string]float64 {
	t.Helper()
	zoneOf := map[string]string{}
	for _, s := range ss {
		zoneOf[s.addr] = s.zone
	}
	got := map[string]float64{}
	h := healthpb.NewHealthClient(c)
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), resolvertest.Timeout)
		var p peer.Peer
		_, err := h.Check(ctx, &healthpb.HealthCheckRequest{Service: svc.FullName}, grpc.Peer(&p))
		cancel()
		if err != nil {
			t.Fatalf("call: %v", err)
		}
		got[zoneOf[p.Addr.String()]] += 1 / float64(n)
	}
	return got
}

// waitZoneShare checks until zone z's share of a round of calls is within
// 2 points of want, and returns how long it took. A round is 300 calls,
// 100 when want is all or nothing (a round measures when the share
// changed to within its own length).
func waitZoneShare(t *testing.T, c grpc.ClientConnInterface, svc *lb.Service, ss []*zonedServer, z string, want float64) time.Duration {
	t.Helper()
	start := time.Now()
	n := 300
	if want == 0 || want == 1 {
		n = 100
	}
	for {
		got := zoneShares(t, c, svc, ss, n)
		if math.Abs(got[z]-want) <= 0.02 {
			return time.Since(start)
		}
		if time.Since(start) > resolvertest.Timeout {
			t.Fatalf("zone %s's share %.3f, want %.3f, still after %v (%v)", z, got[z], want, resolvertest.Timeout, got)
		}
	}
}

// TestZoneAwareThroughRegistries: servers registered in etcd and in
// Consul by lb.Register with their zone (lb.WithLocality), and a client of
// zone a (lb.WithLocality) under ZoneAware: at least 99% of the calls stay
// in zone a while all are healthy; one of a NOT_SERVING: zone a takes
// 93.3% ± 2 points; back to local-first within a second of its recovery.
func TestZoneAwareThroughRegistries(t *testing.T) {
	t.Run("etcd", func(t *testing.T) {
		es, err := etcdserver.Start(t.TempDir(), "")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(es.Stop)
		svc := &lb.Service{Name: "zoned", FullName: "lbtest.Zoned", Discovery: etcd.Config{Endpoints: []string{es.Endpoint()}}, ZoneAware: &lb.ZoneAware{}}
		zoneAware(t, svc, es.Endpoint(), etcd.Scheme, "/services/zoned")
	})
	t.Run("consul", func(t *testing.T) {
		a, err := consulagent.Start(t.TempDir(), "")
		if err == consulagent.ErrNoBinary && os.Getenv("LB_REQUIRE_TOOLS") == "" {
			t.Skip(err)
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Stop() })
		// Consul lists the instances whatever its checks say (they run
		// an hour apart): the NOT_SERVING below is the client's health
		// check's to see, not the registry's.
		svc := &lb.Service{Name: "zoned", FullName: "lbtest.Zoned", Discovery: consul.Config{CheckInterval: time.Hour, IncludeFailing: true}, ZoneAware: &lb.ZoneAware{}}
		zoneAware(t, svc, a.HTTPAddr(), consul.Scheme, "zoned")
	})
}

// zoneAware runs the test on svc, whose registry is at registry and whose
// watch the hub keys by scheme and service.
func zoneAware(t *testing.T, svc *lb.Service, registry, scheme, service string) {
	ss := startZoned(t, svc, registry)
	ctx, cancel := context.WithTimeout(context.Background(), resolvertest.Timeout)
	defer cancel()
	c, err := lb.Dial(ctx, svc, lb.WithInsecure(), lb.WithBlock(), lb.WithRegistryAddress(registry), lb.WithLocality("a", "r"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Every instance found, with its zone.
	w := resolvertest.WaitWatch(t, scheme, service, func(w discovery.WatchInfo) bool { return w.Instances == 9 })
	for _, in := range w.Endpoints {
		if in.Metadata.Zone == "" || in.Metadata.Region != "r" {
			t.Fatalf("instance %s found with zone %q region %q, want its own and r", in.Address, in.Metadata.Zone, in.Metadata.Region)
		}
	}
	waitZoneShare(t, c, svc, ss, "a", 1)
	got := zoneShares(t, c, svc, ss, 1000)
	t.Logf("all healthy: %v", got)
	if got["a"] < 0.99 {
		t.Errorf("all healthy: zone a took %.3f, want at least 0.99", got["a"])
	}
	ss[0].reg.Health().SetServingStatus(svc.FullName, healthpb.HealthCheckResponse_NOT_SERVING)
	waitZoneShare(t, c, svc, ss, "a", 1.4*2/3)
	got = zoneShares(t, c, svc, ss, 2000)
	t.Logf("one of a down: %v", got)
	if math.Abs(got["a"]-1.4*2/3) > 0.02 {
		t.Errorf("one of a down: zone a took %.3f, want 0.933 ± 0.02", got["a"])
	}
	ss[0].reg.Health().SetServingStatus(svc.FullName, healthpb.HealthCheckResponse_SERVING)
	if took := waitZoneShare(t, c, svc, ss, "a", 1); took > time.Second {
		t.Errorf("local first again %v after the recovery, want within 1s", took)
	}
}

// TestTopologyServiceConfig: Subset and ZoneAware take the client's place
// and index from the dial options; the subset is taken per level under
// ZoneAware; both are refused where they mean nothing.
func TestTopologyServiceConfig(t *testing.T) {
	svc := &lb.Service{FullName: "x.Y", Balancer: lb.LeastRequest{}, ZoneAware: &lb.ZoneAware{}, Subset: &lb.Subset{Size: 4},
		Discovery: static.Config{Addresses: []string{"127.0.0.1:1"}}}
	ctx, cancel := context.WithTimeout(context.Background(), resolvertest.Timeout)
	defer cancel()
	c, err := lb.Dial(ctx, svc, lb.WithInsecure(), lb.WithLocality("a", "r"), lb.WithClientIndex(3, 10))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	srv := httptest.NewServer(lb.DebugHandler())
	defer srv.Close()
	client := clientOf(t, getDebugJSON(t, srv.URL+"/?format=json"), "static:///127.0.0.1:1")
	if want := "lb_subset > lb_locality > lb_least_request"; client.Policy != want {
		t.Errorf("policy %q, want %q", client.Policy, want)
	}
	for _, want := range []string{`"size":4`, `"index":3`, `"count":10`, `"zone":"a"`, `"region":"r"`} {
		if !strings.Contains(client.Config, want) {
			t.Errorf("config %s lacks %s", client.Config, want)
		}
	}
	for _, tc := range []struct {
		svc  *lb.Service
		want string
	}{
		{&lb.Service{FullName: "x.Y", Balancer: lb.PickFirst{}, ZoneAware: &lb.ZoneAware{}}, "pick_first"},
		{&lb.Service{FullName: "x.Y", Balancer: lb.ConsistentHash{}, ZoneAware: &lb.ZoneAware{}}, "would move keys"},
		{&lb.Service{FullName: "x.Y", ZoneAware: &lb.ZoneAware{Overprovisioning: 0.5}}, "overprovisioning 0.5"},
		{&lb.Service{FullName: "x.Y", Subset: &lb.Subset{}}, "size 0"},
	} {
		if sc, err := lb.ServiceConfig(tc.svc); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ServiceConfig(%+v) = %s, %v; want an error with %q", tc.svc, sc, err, tc.want)
		}
	}
}

// TestTopologyMetrics: the locality's shares by level and the subset's
// size reach lb.WithMetrics.
func TestTopologyMetrics(t *testing.T) {
	_, addrs := testbackend.StartN(t, 4)
	reader, mp := newMeterProvider(t)
	r := manual.NewBuilderWithScheme("topometrics")
	var s resolver.State
	for i, a := range addrs {
		s.Endpoints = append(s.Endpoints, discovery.Endpoint(a, discovery.Metadata{Zone: string(rune('a' + i%2)), Region: "r"}))
	}
	r.InitialState(s)
	svc := &lb.Service{FullName: testbackend.EchoService, ZoneAware: &lb.ZoneAware{}, Subset: &lb.Subset{Size: 1}}
	ctx, cancel := context.WithTimeout(context.Background(), resolvertest.Timeout)
	defer cancel()
	c, err := lb.Dial(ctx, svc, lb.WithInsecure(), lb.WithBlock(), lb.WithMetrics(mp), lb.WithLocality("a", "r"),
		lb.WithTarget("topometrics:///x"), lb.WithDialOptions(grpc.WithResolvers(r)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Both levels' instances connect (the channel is READY with the
	// first): then the client's zone takes every call.
	var m metrics
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		m = collect(t, reader)
		if got := m.byLabel("lb.locality.share", "lb.locality.level"); got["zone"] == 100 && got["region"] == 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("lb.locality.share by level = %v, want zone 100, region 0", m.byLabel("lb.locality.share", "lb.locality.level"))
		case <-tick.C:
		}
	}
	m.checkLabels(t, "")
	// One of each zone: a subset of 1 per level.
	if got := m.sum("lb.subset.size"); got != 2 {
		t.Errorf("lb.subset.size = %v, want 2 (one per level)", got)
	}
	if got := m.sum("lb.subset.instances"); got != 4 {
		t.Errorf("lb.subset.instances = %v, want 4", got)
	}

	// The live page: each instance of the subset with its zone and level.
	srv := httptest.NewServer(lb.DebugHandler())
	defer srv.Close()
	client := clientOf(t, getDebugJSON(t, srv.URL+"/?format=json"), "topometrics:///x")
	if len(client.Instances) != 2 {
		t.Fatalf("the page shows %d instances, want the subset's 2: %+v", len(client.Instances), client.Instances)
	}
	for _, in := range client.Instances {
		if !strings.HasPrefix(in.Policy, "in subset (2 of 4), zone ") || !strings.Contains(in.Policy, " level (") {
			t.Errorf("instance %s: policy column %q, want its subset, zone and level", in.Address, in.Policy)
		}
	}
}

package kubernetes_test

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sercand/kuberesolver/v6"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/cctest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/propagation"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/kubernetes"
)

// kubeClient is sercand/kuberesolver's K8sClient on the test's API server,
// with the admin's kubeconfig (its own clients are in-cluster or plain
// HTTP only).
type kubeClient struct {
	host string
	hc   *http.Client
}

func newKubeClient(tb testing.TB, kubeconfig string) *kubeClient {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		tb.Fatal(err)
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(hc.CloseIdleConnections)
	return &kubeClient{host: strings.TrimSuffix(cfg.Host, "/"), hc: hc}
}

func (c *kubeClient) Do(req *http.Request) (*http.Response, error) { return c.hc.Do(req) }
func (c *kubeClient) Host() string                                 { return c.host }
func (c *kubeClient) GetRequest(u string) (*http.Request, error) {
	if !strings.HasPrefix(u, c.host) {
		u = c.host + "/" + u
	}
	return http.NewRequest("GET", u, nil)
}

// BenchmarkPropagation: from an EndpointSlice update that takes an
// endpoint out to the last call that reaches it, under 4 callers; ours
// next to sercand/kuberesolver v6 in the same run, on one Service of one
// slice (kuberesolver reads a Service of one slice only: each event
// replaces its addresses with that slice's).
//
//	go test ./runtime/discovery/kubernetes -run '^$' -bench Propagation -benchtime 30x
func BenchmarkPropagation(b *testing.B) {
	e := newEnv(b)
	for _, name := range []string{"lb", "kuberesolver"} {
		b.Run(name, func(b *testing.B) {
			svc := "prop-" + name
			stay, leave := propagation.StartBackend(b), propagation.StartBackend(b)
			e.dialer.add("198.51.100.201:50051", stay.Addr)
			e.dialer.add("198.51.100.202:50051", leave.Addr)
			both := []ep{{ip: "198.51.100.201", ready: true, serving: true}, {ip: "198.51.100.202", ready: true, serving: true}}
			e.put(e.slice(svc, svc, discoveryv1.AddressTypeIPv4, both))
			var rb resolver.Builder = kubernetes.NewColdBuilder()
			target := e.target(svc)
			if name == "kuberesolver" {
				rb = kuberesolver.NewBuilder(newKubeClient(b, e.kubeconfig), "kubernetes")
				target = "kubernetes:///" + svc + "." + e.ns + ":grpc"
			}
			rb, rec := cctest.Wrap(rb)
			conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(rb),
				grpc.WithContextDialer(e.dialer.dial), grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			defer discovery.CloseIdleWatches()
			propagation.Measure(b, conn, stay, leave, propagation.Registry{
				Add: func() { e.put(e.slice(svc, svc, discoveryv1.AddressTypeIPv4, both)) },
				Remove: func() {
					e.put(e.slice(svc, svc, discoveryv1.AddressTypeIPv4, both[:1]))
				},
				WaitRemoved: func() {
					rec.Wait(b, "a state without the leaving endpoint", func(states []resolver.State, _ []error) bool {
						if len(states) == 0 {
							return false
						}
						s := states[len(states)-1]
						return len(s.Endpoints)+len(s.Addresses) > 0 && !slices.Contains(addrsOf(s), "198.51.100.202:50051")
					})
				},
			})
		})
	}
}

func addrsOf(s resolver.State) []string {
	var out []string
	for _, a := range s.Addresses {
		out = append(out, a.Addr)
	}
	for _, e := range s.Endpoints {
		for _, a := range e.Addresses {
			out = append(out, a.Addr)
		}
	}
	return out
}

// scaleSlices writes a Service of n endpoints in slices of 100 (the
// endpointslice controller's default), addresses in the benchmarking
// range 198.18.0.0/15, and returns the slices.
func scaleSlices(e *env, svc string, n int) []*discoveryv1.EndpointSlice {
	var out []*discoveryv1.EndpointSlice
	for s := 0; s*100 < n; s++ {
		var eps []ep
		for i := s * 100; i < min(n, (s+1)*100); i++ {
			eps = append(eps, ep{ip: fmt.Sprintf("198.18.%d.%d", i/250, i%250+1), ready: true, serving: true})
		}
		es := e.slice(svc, svc+"-"+strconv.Itoa(s), discoveryv1.AddressTypeIPv4, eps)
		e.put(es)
		out = append(out, es)
	}
	return out
}

// BenchmarkScale: one Service of 5,000 endpoints in 50 slices. full: from
// Build to the state with all 5,000; change: one endpoint of one slice
// made not ready, or ready again, to the state without it or with it
// (p50, p90); join: a second channel joining the running watch.
//
//	go test ./runtime/discovery/kubernetes -run '^$' -bench Scale -benchtime 20x
func BenchmarkScale(b *testing.B) {
	const n = 5000
	e := newEnv(b)
	svc := "scale"
	ss := scaleSlices(e, svc, n)
	target := func() resolver.Target {
		u, _ := url.Parse(e.target(svc))
		return resolver.Target{URL: *u}
	}
	b.Run(fmt.Sprintf("full/endpoints=%d", n), func(b *testing.B) {
		for b.Loop() {
			cc := cctest.NewSizeCC()
			r, err := kubernetes.NewColdBuilder().Build(target(), cc, resolver.BuildOptions{})
			if err != nil {
				b.Fatal(err)
			}
			cc.WaitLen(b, n)
			b.StopTimer()
			r.Close()
			discovery.CloseIdleWatches()
			b.StartTimer()
		}
	})
	b.Run(fmt.Sprintf("join/endpoints=%d", n), func(b *testing.B) {
		rb := kubernetes.NewColdBuilder()
		first := cctest.NewSizeCC()
		r0, err := rb.Build(target(), first, resolver.BuildOptions{})
		if err != nil {
			b.Fatal(err)
		}
		defer func() { r0.Close(); discovery.CloseIdleWatches() }()
		first.WaitLen(b, n)
		for b.Loop() {
			cc := cctest.NewSizeCC()
			r, err := rb.Build(target(), cc, resolver.BuildOptions{})
			if err != nil {
				b.Fatal(err)
			}
			cc.WaitLen(b, n)
			r.Close()
		}
	})
	b.Run(fmt.Sprintf("change/endpoints=%d", n), func(b *testing.B) {
		cc := cctest.NewSizeCC()
		r, err := kubernetes.NewColdBuilder().Build(target(), cc, resolver.BuildOptions{})
		if err != nil {
			b.Fatal(err)
		}
		defer func() { r.Close(); discovery.CloseIdleWatches() }()
		cc.WaitLen(b, n)
		es := ss[len(ss)/2]
		var lat []time.Duration
		i := 0
		for b.Loop() {
			ready := i%2 == 1
			es.Endpoints[0].Conditions.Ready = &ready
			start := time.Now()
			e.put(es)
			if ready {
				cc.WaitLen(b, n)
			} else {
				cc.WaitLen(b, n-1)
			}
			lat = append(lat, time.Since(start))
			i++
		}
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*9/10].Microseconds())/1000, "p90-ms")
		if i%2 == 1 {
			ready := true
			es.Endpoints[0].Conditions.Ready = &ready
			e.put(es)
		}
	})
}

// TestKuberesolverLosesSlices records what the propagation comparison
// avoids: sercand/kuberesolver v6.0.1, on a Service of two slices, ends up
// with the addresses of the last slice it heard of only.
func TestKuberesolverLosesSlices(t *testing.T) {
	e := newEnv(t)
	e.put(e.slice("two", "two-a", discoveryv1.AddressTypeIPv4, []ep{{ip: "198.51.100.231", ready: true}}))
	e.put(e.slice("two", "two-b", discoveryv1.AddressTypeIPv4, []ep{{ip: "198.51.100.232", ready: true}}))
	rb, rec := cctest.Wrap(kuberesolver.NewBuilder(newKubeClient(t, e.kubeconfig), "kubernetes"))
	conn, err := grpc.NewClient("kubernetes:///two."+e.ns+":grpc", grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(rb),
		grpc.WithContextDialer(e.dialer.dial))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Connect()
	rec.Wait(t, "two states", func(states []resolver.State, _ []error) bool { return len(states) >= 2 })
	states := rec.States()
	last := addrsOf(states[len(states)-1])
	t.Logf("kuberesolver's states: %v", rec.AllAddrs())
	if len(last) != 1 {
		t.Logf("kuberesolver now publishes %v: the two slices merged (it was one slice's only in v6.0.1)", last)
	}
}

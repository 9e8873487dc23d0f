package consul_test

import (
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/consul"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/lb"
)

// queryCounter is an HTTP proxy in front of an agent that counts the health
// queries passing through it, and the most in flight at once.
type queryCounter struct {
	addr string

	mu                       sync.Mutex
	inFlight, maxIn, queries int
}

func startQueryCounter(t *testing.T, agent string) *queryCounter {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	q := &queryCounter{addr: lis.Addr().String()}
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: agent})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		health := strings.HasPrefix(r.URL.Path, "/v1/health/service/")
		if health {
			q.mu.Lock()
			q.queries++
			q.inFlight++
			q.maxIn = max(q.maxIn, q.inFlight)
			q.mu.Unlock()
			defer func() {
				q.mu.Lock()
				q.inFlight--
				q.mu.Unlock()
			}()
		}
		proxy.ServeHTTP(w, r)
	})}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(lis) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return q
}

func (q *queryCounter) counts() (queries, maxInFlight int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.queries, q.maxIn
}

// TestOneBlockingQueryPerProcess: 100 clients and one pool of 16
// connections resolving one service make one blocking query at a time
// between them, counted by a proxy in front of the agent.
func TestOneBlockingQueryPerProcess(t *testing.T) {
	a := startAgent(t, "")
	q := startQueryCounter(t, a.HTTPAddr())
	backends := []*backend{startBackend(t, testService(a.HTTPAddr(), consul.Config{})), startBackend(t, testService(a.HTTPAddr(), consul.Config{}))}
	waitPassing(t, a.HTTPAddr(), 2)

	svc := testService(q.addr, consul.Config{})
	var conns []*lb.Conn
	for range 100 {
		conns = append(conns, dial(t, svc))
	}
	pooled := *svc
	pooled.PoolSize = 16
	conns = append(conns, dial(t, &pooled))
	for _, c := range conns {
		waitCalls(t, c, backends[:1], nil)
	}
	var shared []discovery.WatchInfo
	for _, w := range discovery.Watches() {
		if w.Key.Scheme == consul.Scheme && w.Key.Registry == q.addr {
			shared = append(shared, w)
		}
	}
	if len(shared) != 1 || shared[0].Subscribers != 101 {
		t.Fatalf("watches of the service: %+v, want one with 101 subscribers (100 channels and one pool)", shared)
	}
	queries, maxIn := q.counts()
	if maxIn != 1 {
		t.Errorf("101 channels had up to %d health queries in flight at once, want 1", maxIn)
	}
	t.Logf("101 channels: %d health queries in all, at most %d in flight", queries, maxIn)
}

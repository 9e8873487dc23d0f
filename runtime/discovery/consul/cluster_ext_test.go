package consul_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/consulagent"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/load"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/rolling"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/consul"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/lb"
)

// TestClusterLosesItsLeader: a Consul datacenter on loopback, 3 servers
// and a client agent; 3 backends registered with the client agent, as
// every host registers with its local agent, and a client resolving
// through it, calling them at 200 calls a second. The leader server is
// killed: no call fails, the registrations stay in the catalog as they
// were (not deleted and registered again), a 4th backend registered
// afterwards takes calls (the resolver keeps updating), and the catalog
// holds exactly one registration per instance.
func TestClusterLosesItsLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("a cluster and a leader election")
	}
	began := time.Now()
	cl, err := consulagent.StartCluster(t.TempDir(), 3)
	if err == consulagent.ErrNoBinary && os.Getenv("LB_REQUIRE_TOOLS") == "" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Stop)
	t.Logf("cluster up in %v", time.Since(began))
	agent := cl.Client().HTTPAddr()
	svc := &lb.Service{Name: "clustered", FullName: "test.Echo", Discovery: consul.Config{Address: agent, CheckInterval: time.Second}}
	var bs []*backend
	for range 3 {
		bs = append(bs, startBackend(t, svc))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*timeout)
	defer cancel()
	c, err := lb.Dial(ctx, svc, lb.WithInsecure(), lb.WithBlock())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rolling.WaitListed(ctx, t, svc.Name, 3)
	before := catalog(ctx, t, agent, svc.Name, 3)

	// Load: a call every 5 ms, open loop.
	l := load.StartRate(200, 5*time.Second, func(cctx context.Context) error { return call(cctx, c) })
	t.Cleanup(func() { l.Stop() })

	// A registration lost on the way shows as a status change.
	var changed []<-chan struct{}
	for _, b := range bs {
		if err := b.reg.WaitRegistered(ctx); err != nil {
			t.Fatal(err)
		}
		changed = append(changed, b.reg.StatusChanged())
	}
	leader := cl.Leader()
	if leader < 0 {
		t.Fatal("no leader")
	}
	logsFrom := len(testLogs.String())
	start := time.Now()
	cl.StopMember(leader)
	next, err := cl.WaitLeader(timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("server %d killed; server %d leads %v later", leader, next, time.Since(start))
	// The resolver keeps updating: a 4th backend registered once a new
	// leader is elected, and the client agent has turned from the dead
	// server (WaitLeader asks it), reaches the client and takes calls.
	// (One registered during the election is in the agent at once, but
	// its sync to the catalog fails; when the agent's next full sync asks
	// the dead server, the agent tries again only 15 to 30 s later.)
	bs = append(bs, startBackend(t, svc))
	rolling.WaitListed(ctx, t, svc.Name, 4)
	listed := time.Since(start)
	waitCalled(ctx, t, bs[3])
	t.Logf("a 4th backend was listed %v and called %v after the leader was killed", listed, time.Since(start))
	// Some more load on the servers left.
	select {
	case <-time.After(2 * time.Second): // load on the cluster of two
	case <-ctx.Done():
	}
	calls, failed, firstErr := l.Stop()
	t.Logf("%d calls, %d failed (first: %v)", calls, failed, firstErr)
	if failed != 0 {
		t.Errorf("%d of %d calls failed while the cluster lost its leader; first: %v", failed, calls, firstErr)
	}

	// The registrations stayed, in the agent and in the catalog.
	lost := 0
	for i, ch := range changed {
		select {
		case <-ch:
			lost++
			t.Errorf("backend %d: the registration changed status during the failover: now %v", i, bs[i].reg.Status())
		default:
		}
	}
	if n := strings.Count(testLogs.String()[logsFrom:], "not registered"); n != 0 {
		t.Errorf("%d registration attempts failed during the failover", n)
	}
	after := catalog(ctx, t, agent, svc.Name, 4)
	for id, idx := range before {
		if after[id] != idx {
			t.Errorf("%s was registered again in the catalog: created at index %d, then %d", id, idx, after[id])
		}
	}
	t.Logf("%d registrations lost; one catalog entry per instance, the first 3 as they were", lost)

	// Shutdown with a server down: each registrar deregisters through the
	// client agent, which removes the instance from the catalog.
	for i, b := range bs {
		start := time.Now()
		if err := b.reg.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown of backend %d: %v", i, err)
		}
		t.Logf("backend %d shut down in %v", i, time.Since(start))
	}
	catalog(ctx, t, agent, svc.Name, 0)
}

// catalog waits until the catalog holds n registrations of service, and
// at most one for each instance ID, and returns each one's CreateIndex.
func catalog(ctx context.Context, t *testing.T, agent, service string, n int) map[string]uint64 {
	t.Helper()
	cfg := api.DefaultConfig()
	cfg.Address = agent
	c, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.Transport.CloseIdleConnections()
	// Blocking queries: each returns when the catalog changes.
	var got []*api.CatalogService
	for index := uint64(0); ; {
		entries, meta, err := c.Catalog().Service(service, "", (&api.QueryOptions{WaitIndex: index, WaitTime: timeout}).WithContext(ctx))
		if err == nil {
			got = entries
			byID := map[string]uint64{}
			for _, e := range entries {
				if _, dup := byID[e.ServiceID]; dup {
					t.Fatalf("%s is registered twice: %v", e.ServiceID, describe(entries))
				}
				byID[e.ServiceID] = e.CreateIndex
			}
			if len(byID) == n {
				return byID
			}
			index = max(meta.LastIndex, 1)
			continue
		}
		select {
		case <-time.After(100 * time.Millisecond): // the agent failed: not at once again
		case <-ctx.Done():
			t.Fatalf("the catalog holds %v (%v), want %d registrations", describe(got), err, n)
		}
	}
}

func describe(entries []*api.CatalogService) string {
	var out []string
	for _, e := range entries {
		out = append(out, fmt.Sprintf("%s on %s (index %d)", e.ServiceID, e.Node, e.CreateIndex))
	}
	return "[" + strings.Join(out, ", ") + "]"
}

// waitCalled waits until b has taken a call.
func waitCalled(ctx context.Context, t *testing.T, b *backend) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond) // polls the backend's call count
	defer tick.Stop()
	for b.calls.Load() == 0 {
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("%s took no call", b.addr)
		}
	}
}

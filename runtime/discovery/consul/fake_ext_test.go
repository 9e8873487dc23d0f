package consul_test

// Unit tests against a small fake of Consul's health endpoint, for what a
// real agent will not do on demand: an index going backwards, index 0,
// instant replies, a 403 mid-run, an empty answer filtered by ACLs.

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/resolver"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/cctest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/consul"
)

// reply is one scripted answer of the fake.
type reply struct {
	index    uint64
	status   int               // 0 means 200
	ports    []int             // instances 10.0.0.1:<port>
	filtered bool              // X-Consul-Results-Filtered-By-ACLs
	hold     bool              // block until the test ends, like an unchanged blocking query
	instant  bool              // when it is the last: answer every query at once, as a misbehaving agent would
	meta     map[string]string // every instance's Meta
	nodeMeta map[string]string // the node's Meta
	badAddr  bool              // one more instance, whose service address has a port
}

// fakeConsul answers /v1/health/service/<name> from a script, then blocks
// queries that wait on the last reply's index as a real agent does (unless
// it is instant); it records the index and time of every query.
type fakeConsul struct {
	*httptest.Server
	mu      sync.Mutex
	script  []reply     // guarded by mu
	indexes []uint64    // guarded by mu
	times   []time.Time // guarded by mu
	queried chan struct{}
	done    chan struct{}
}

func newFake(t *testing.T, script ...reply) *fakeConsul {
	f := &fakeConsul{script: script, queried: make(chan struct{}, 10000), done: make(chan struct{})}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(func() {
		close(f.done)
		f.Server.Close()
	})
	return f
}

func (f *fakeConsul) serve(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.URL.Path, "/v1/health/service/") {
		http.NotFound(w, r)
		return
	}
	idx, _ := strconv.ParseUint(r.URL.Query().Get("index"), 10, 64)
	f.mu.Lock()
	f.indexes = append(f.indexes, idx)
	f.times = append(f.times, time.Now())
	rep := f.script[0]
	last := len(f.script) == 1
	if !last {
		f.script = f.script[1:]
	}
	f.mu.Unlock()
	if last && !rep.instant && idx >= rep.index && idx > 0 {
		// The script has nothing new: block as a real agent does until
		// its answer changes (never, here).
		rep.hold = true
	}
	select {
	case f.queried <- struct{}{}:
	default: // nobody counts queries this far
	}
	if rep.hold {
		select {
		case <-r.Context().Done():
		case <-f.done:
		}
		return
	}
	// Every header a real agent sends: the api stops reading them at the
	// first one missing.
	w.Header().Set("X-Consul-Index", strconv.FormatUint(rep.index, 10))
	w.Header().Set("X-Consul-LastContact", "0")
	w.Header().Set("X-Consul-KnownLeader", "true")
	if rep.filtered {
		w.Header().Set("X-Consul-Results-Filtered-By-ACLs", "true")
	}
	if rep.status != 0 {
		w.WriteHeader(rep.status)
		w.Write([]byte("Permission denied"))
		return
	}
	entries := []map[string]any{}
	for _, p := range rep.ports {
		entries = append(entries, map[string]any{
			"Node":    map[string]any{"Node": "n1", "Address": "10.0.0.1", "Meta": rep.nodeMeta},
			"Service": map[string]any{"ID": "s" + strconv.Itoa(p), "Service": "svc", "Address": "", "Port": p, "Meta": rep.meta},
		})
	}
	if rep.badAddr {
		entries = append(entries, map[string]any{
			"Node":    map[string]any{"Node": "n1", "Address": "10.0.0.1"},
			"Service": map[string]any{"ID": "bad", "Service": "svc", "Address": "127.0.0.1:45489", "Port": 45489},
		})
	}
	json.NewEncoder(w).Encode(entries)
}

func (f *fakeConsul) waitQueries(t *testing.T, n int) []uint64 {
	t.Helper()
	for range n {
		select {
		case <-f.queried:
		case <-time.After(cctest.Timeout):
			t.Fatalf("fewer than %d queries", n)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]uint64(nil), f.indexes...)
}

func build(t testing.TB, target string, opts ...consul.Option) *cctest.ClientConn {
	t.Helper()
	return cctest.Build(t, consul.NewBuilder(opts...), target)
}

func fakeTarget(f *fakeConsul) string {
	return "consul://" + strings.TrimPrefix(f.URL, "http://") + "/svc"
}

func TestIndexGoingBackwardsResets(t *testing.T) {
	f := newFake(t, reply{index: 10, ports: []int{1}}, reply{index: 12, ports: []int{1, 2}}, reply{index: 5, ports: []int{2}}, reply{index: 6, hold: true})
	cc := build(t, fakeTarget(f), consul.WithRateLimit(1000, 10))
	got := f.waitQueries(t, 4)
	if want := []uint64{0, 10, 12, 0}; !equal(got[:4], want) {
		t.Errorf("query indexes = %v, want %v: after 12 came 5, so start over at 0", got, want)
	}
	cc.WaitAddrs(t, "10.0.0.1:2")
}

func TestIndexZeroIsNeverWaitedOnAndLoopIsRateLimited(t *testing.T) {
	const perSecond, burst, queries = 20, 2, 12
	f := newFake(t, reply{index: 0, ports: []int{1}, instant: true}) // index 0, instant replies, forever
	cc := build(t, fakeTarget(f), consul.WithRateLimit(perSecond, burst))
	cc.WaitAddrs(t, "10.0.0.1:1")
	got := f.waitQueries(t, queries)
	for i, idx := range got[1:] {
		if idx != 1 {
			t.Fatalf("query %d waited on index %d after an index-0 reply, want 1", i+1, idx)
		}
	}
	f.mu.Lock()
	elapsed := f.times[queries-1].Sub(f.times[0])
	f.mu.Unlock()
	// queries-burst queries need a token each at perSecond.
	if min := time.Duration(float64(queries-burst) / perSecond * float64(time.Second)); elapsed < min*9/10 {
		t.Errorf("%d instant replies took %v, want at least %v at %d queries a second", queries, elapsed, min, perSecond)
	}
}

func TestForbiddenMidRunKeepsLastState(t *testing.T) {
	f := newFake(t, reply{index: 3, ports: []int{1, 2}}, reply{index: 4, status: http.StatusForbidden}, reply{index: 5, hold: true})
	cc := build(t, fakeTarget(f), consul.WithRateLimit(1000, 10))
	cc.WaitAddrs(t, "10.0.0.1:1", "10.0.0.1:2")
	cc.Wait(t, "the 403 reported", func(_ []resolver.State, errs []error) bool {
		return len(errs) > 0 && strings.Contains(errs[0].Error(), "403")
	})
	if n := len(cc.States()); n != 1 {
		t.Errorf("%d states, want only the first: a 403 must not change the addresses", n)
	}
}

func TestACLFilteredEmptyIsAnError(t *testing.T) {
	f := newFake(t, reply{index: 3, ports: []int{1}}, reply{index: 4, filtered: true}, reply{index: 5, hold: true})
	cc := build(t, fakeTarget(f), consul.WithRateLimit(1000, 10))
	cc.Wait(t, "ErrFilteredByACLs reported", func(_ []resolver.State, errs []error) bool {
		return len(errs) > 0 && errors.Is(errs[0], consul.ErrFilteredByACLs)
	})
	for _, st := range cc.States() {
		if len(st.Endpoints) == 0 {
			t.Error("an ACL-filtered answer was published as an empty list")
		}
	}
}

func TestNoneSurvivesTheGracePeriod(t *testing.T) {
	f := newFake(t, reply{index: 3, ports: []int{1}}, reply{index: 4}) // then none, forever
	cc := build(t, fakeTarget(f)+"?grace=2s", consul.WithRateLimit(1000, 10))
	cc.WaitAddrs(t, "10.0.0.1:1")
	cc.Wait(t, "ErrNoInstances reported", func(_ []resolver.State, errs []error) bool {
		return len(errs) > 0 && errors.Is(errs[0], consul.ErrNoInstances)
	})
	if n := len(cc.States()); n != 1 {
		t.Fatalf("%d states during the grace period, want the last set kept", n)
	}
	cc.WaitAddrs(t) // after the grace period, none
}

func TestFailFastPublishesNoneAtOnce(t *testing.T) {
	f := newFake(t, reply{index: 3, ports: []int{1}}, reply{index: 4}, reply{index: 5, hold: true})
	cc := build(t, fakeTarget(f)+"?failfast=true", consul.WithRateLimit(1000, 10))
	cc.WaitAddrs(t)
	cc.Wait(t, "why reported", func(_ []resolver.State, errs []error) bool {
		return len(errs) > 0 && errors.Is(errs[len(errs)-1], consul.ErrNoInstances)
	})
}

func equal(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestBadEntriesAndWeights: an instance whose address cannot be dialled is
// dropped, the others served; a weight that is not a number, or a
// registration time that is not a time, is ignored and its instance kept.
func TestBadEntriesAndWeights(t *testing.T) {
	f := newFake(t, reply{index: 3, ports: []int{1, 2}, meta: map[string]string{"weight": "heavy", "zone": "z1", "registered_at": "monday"}, badAddr: true})
	cc := build(t, fakeTarget(f), consul.WithRateLimit(1000, 10))
	s := cc.WaitAddrs(t, "10.0.0.1:1", "10.0.0.1:2")
	md, ok := discovery.MetadataOf(s.Endpoints[0])
	if !ok || md.Weight != 0 || md.Zone != "z1" || !md.RegisteredAt.IsZero() || md.Custom["registered_at"] != "" {
		t.Errorf("metadata %+v, %v; want zone z1, no weight and no registration time", md, ok)
	}
}

// TestZoneFromNodeMeta: an instance's zone and region are its service
// Meta's, else its node's.
func TestZoneFromNodeMeta(t *testing.T) {
	f := newFake(t, reply{index: 3, ports: []int{1}, meta: map[string]string{"region": "service-region"}, nodeMeta: map[string]string{"zone": "node-zone", "region": "node-region"}})
	cc := build(t, fakeTarget(f), consul.WithRateLimit(1000, 10))
	s := cc.WaitAddrs(t, "10.0.0.1:1")
	md, _ := discovery.MetadataOf(s.Endpoints[0])
	if md.Zone != "node-zone" || md.Region != "service-region" {
		t.Errorf("zone %q region %q, want the node's zone and the service's region", md.Zone, md.Region)
	}
}

// TestBadTargets: each bad target is refused with an error that names the
// bad part and shows no secret.
func TestBadTargets(t *testing.T) {
	for _, tc := range []struct{ target, want string }{
		{"consul://127.0.0.1:8500/team/greeter", `'/' is not allowed`},
		{"consul://127.0.0.1:8500/greeter?tag=", "empty tag"},
		{"consul://127.0.0.1:8500/greeter?token=S3CRET", "token is not allowed"},
		{"consul://user:S3CRET@127.0.0.1:8500/greeter", "credentials are not allowed"},
		{"consul://127.0.0.1:8500/greeter?grace=soon", `grace "soon"`},
		{"consul://127.0.0.1:8500/greeter?stale=maybe", `stale "maybe"`},
		{"consul://127.0.0.1:8500/greeter?onfailure=never&token=S3CRET", `onfailure "never"`},
		{"consul://127.0.0.1:8500/", "no service"},
	} {
		u, err := url.Parse(tc.target)
		if err != nil {
			t.Fatal(err)
		}
		_, err = consul.NewBuilder().Build(resolver.Target{URL: *u}, cctest.New(), resolver.BuildOptions{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Build(%s) = %v, want an error containing %q", tc.target, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "S3CRET") {
			t.Errorf("Build(%s) = %v: the error shows a secret", tc.target, err)
		}
	}
}

package discovery

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/experimental/balancer/weight"
	estats "google.golang.org/grpc/experimental/stats"
	"google.golang.org/grpc/grpclog"
	"google.golang.org/grpc/resolver"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/cctest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/logtest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/internal/clock"
)

const timeout = 10 * time.Second

// fakeSource runs what the test sends it.
type fakeSource struct {
	ops     chan func(Updates) error
	watches atomic.Int32
	closed  atomic.Bool
}

func newFakeSource() *fakeSource { return &fakeSource{ops: make(chan func(Updates) error)} }

func (s *fakeSource) Watch(ctx context.Context, u Updates) error {
	s.watches.Add(1)
	for {
		select {
		case <-ctx.Done():
			return nil
		case op := <-s.ops:
			if err := op(u); err != nil {
				return err
			}
		}
	}
}

func (s *fakeSource) Close() { s.closed.Store(true) }

// do runs op in the watch and waits until it has run.
func (s *fakeSource) do(t *testing.T, op func(Updates) error) {
	t.Helper()
	ran := make(chan struct{})
	wrapped := func(u Updates) error {
		defer close(ran)
		return op(u)
	}
	select {
	case s.ops <- wrapped:
	case <-time.After(timeout):
		t.Fatal("the source was not watching")
	}
	select {
	case <-ran:
	case <-time.After(timeout):
		t.Fatal("the source did not run the update")
	}
}

func (s *fakeSource) reset(t *testing.T, addrs ...string) {
	t.Helper()
	s.do(t, func(u Updates) error {
		var insts []Instance
		for _, a := range addrs {
			insts = append(insts, Instance{ID: a, Address: a})
		}
		u.Reset(insts, nil)
		u.Flush()
		return nil
	})
}

// newRecorder returns a channel that records what it is given and, as
// pick_first and round_robin do, rejects a state with no endpoint.
func newRecorder() *cctest.ClientConn { return cctest.New(cctest.RejectEmpty()) }

type testHub struct {
	*hub
	clock *clock.Fake
}

func newTestHub(t *testing.T) testHub {
	c := clock.NewFake(time.Unix(1_000_000, 0))
	h := &hub{clock: c, linger: time.Minute, watches: map[Key]*hubWatch{}, lastGood: map[Key]lastGood{}}
	t.Cleanup(h.closeIdle)
	return testHub{h, c}
}

func (h testHub) join(t *testing.T, spec Spec) *cctest.ClientConn {
	t.Helper()
	rec := newRecorder()
	s := h.subscribe("fake:///svc", spec, rec, resolver.BuildOptions{})
	t.Cleanup(s.Close)
	return rec
}

func fakeSpec(src *fakeSource, p FailurePolicy) Spec {
	return Spec{
		Key:     Key{Scheme: "fake", Service: "svc", Policy: p.String()},
		New:     func() (Source, error) { return src, nil },
		Backoff: Backoff{Base: time.Millisecond, Max: time.Millisecond},
		Policy:  p,
	}
}

func TestOrderKeptDuplicatesResolvedByLowestID(t *testing.T) {
	h := newTestHub(t)
	src := newFakeSource()
	rec := h.join(t, fakeSpec(src, FailurePolicy{}))
	// Consul near or SRV priority order is kept; two IDs with one address
	// publish it once with the lowest ID's metadata, whatever the order.
	src.do(t, func(u Updates) error {
		u.Reset([]Instance{
			{ID: "k3", Address: "10.0.0.3:80"},
			{ID: "k2", Address: "10.0.0.1:80", Metadata: Metadata{Weight: 7}},
			{ID: "k1", Address: "10.0.0.1:80", Metadata: Metadata{Weight: 2}},
			{ID: "k4", Address: "[::ffff:10.0.0.3]:80"}, // the same as k3
		}, nil)
		u.Flush()
		return nil
	})
	ep := rec.WaitAddrsInOrder(t, "10.0.0.3:80", "10.0.0.1:80").Endpoints[1]
	if md, _ := MetadataOf(ep); md.Weight != 2 {
		t.Errorf("duplicate address published with weight %d, want 2 (the lowest ID, k1)", md.Weight)
	}
	if w := weight.FromEndpoint(ep).Weight; w != 2 {
		t.Errorf("grpc weight attribute = %d, want 2", w)
	}
	// Deleting the winner shows the other one; a new ID goes last.
	src.do(t, func(u Updates) error {
		u.Delete("k1")
		u.Put(Instance{ID: "k0", Address: "10.0.0.9:80"})
		u.Flush()
		return nil
	})
	ep = rec.WaitAddrsInOrder(t, "10.0.0.3:80", "10.0.0.1:80", "10.0.0.9:80").Endpoints[1]
	if md, _ := MetadataOf(ep); md.Weight != 7 {
		t.Errorf("after deleting k1, weight %d, want 7 (k2)", md.Weight)
	}
}

func TestUnchangedPublishesNothingAndErrorsAreReportedOnce(t *testing.T) {
	h := newTestHub(t)
	src := newFakeSource()
	rec := h.join(t, fakeSpec(src, FailurePolicy{}))
	src.reset(t, "10.0.0.1:80", "10.0.0.2:80")
	rec.WaitAddrsInOrder(t, "10.0.0.1:80", "10.0.0.2:80")
	src.reset(t, "10.0.0.1:80", "10.0.0.2:80")
	src.do(t, func(u Updates) error {
		u.Put(Instance{ID: "10.0.0.1:80", Address: "10.0.0.1:80"})
		u.Flush()
		return nil
	})
	src.do(t, func(u Updates) error { u.Fail(errors.New("acl")); return nil })
	src.do(t, func(u Updates) error { u.Fail(errors.New("acl")); return nil })
	rec.WaitErr(t, "acl")
	src.reset(t, "10.0.0.3:80")
	rec.WaitAddrsInOrder(t, "10.0.0.3:80")
	if n := len(rec.States()); n != 2 {
		t.Errorf("published %d states, want 2: unchanged answers publish nothing", n)
	}
	if errs := rec.Errors(); len(errs) != 1 {
		t.Errorf("errors %v, want the same error reported once", errs)
	}
}

func TestDroppedEntriesAreLeftOutAndNamed(t *testing.T) {
	h := newTestHub(t)
	src := newFakeSource()
	rec := h.join(t, fakeSpec(src, FailurePolicy{}))
	src.do(t, func(u Updates) error {
		u.Reset([]Instance{{ID: "good", Address: "10.0.0.1:80"}, {ID: "bad", Address: "[1:2]:80"}}, nil)
		u.Flush()
		return nil
	})
	rec.WaitAddrsInOrder(t, "10.0.0.1:80")
	src.do(t, func(u Updates) error {
		u.Reset([]Instance{{ID: "bad", Address: "999.1.1.1:80"}}, []Dropped{{ID: "worse", Reason: errors.New("bad JSON")}})
		u.Flush()
		return nil
	})
	rec.WaitErr(t, "every entry (2) was dropped as invalid")
	states := rec.States()
	if got := cctest.Addrs(states[len(states)-1]); !slices.Equal(got, []string{"10.0.0.1:80"}) {
		t.Errorf("state %v after all entries went bad, want the last good one kept", got)
	}
}

func TestFailurePolicies(t *testing.T) {
	broken := errors.New("registry down")
	for _, tc := range []struct {
		name   string
		policy FailurePolicy
		// what the channel sees at once, and after 10s of failure
		now, later []string
	}{
		{"keep last good", FailurePolicy{}, []string{"10.0.0.1:80"}, []string{"10.0.0.1:80"}},
		{"keep for 5s", FailurePolicy{MaxStaleness: 5 * time.Second}, []string{"10.0.0.1:80"}, []string{}},
		{"fail fast", FailurePolicy{Mode: FailFast}, []string{}, []string{}},
		{"fallback", FailurePolicy{Mode: StaticFallback, Fallback: []string{"10.9.9.9:80"}}, []string{"10.9.9.9:80"}, []string{"10.9.9.9:80"}},
		{"fallback after 5s", FailurePolicy{Mode: StaticFallback, MaxStaleness: 5 * time.Second, Fallback: []string{"10.9.9.9:80"}}, []string{"10.0.0.1:80"}, []string{"10.9.9.9:80"}},
	} {
		for _, failure := range []string{"unreachable", "empty", "all invalid"} {
			t.Run(tc.name+"/"+failure, func(t *testing.T) {
				h := newTestHub(t)
				src := newFakeSource()
				rec := h.join(t, fakeSpec(src, tc.policy))
				src.reset(t, "10.0.0.1:80")
				rec.WaitAddrsInOrder(t, "10.0.0.1:80")
				src.do(t, func(u Updates) error {
					switch failure {
					case "unreachable":
						return broken
					case "empty":
						u.Reset(nil, nil)
					default:
						u.Reset(nil, []Dropped{{ID: "k", Reason: errors.New("bad")}})
					}
					u.Flush()
					return nil
				})
				rec.Wait(t, "an error", func(_ []resolver.State, errs []error) bool { return len(errs) > 0 })
				rec.WaitAddrsInOrder(t, tc.now...)
				if failure == "unreachable" {
					// The broken watch backs off on the fake clock: the
					// time moves on once the loop waits.
					waitTimer(t, h.clock, func(d time.Duration) bool { return d <= fakeSpec(src, tc.policy).Backoff.Max })
				}
				h.clock.Advance(10 * time.Second)
				rec.WaitAddrsInOrder(t, tc.later...)
				// Recovery is at once.
				src.reset(t, "10.0.0.2:80")
				rec.WaitAddrsInOrder(t, "10.0.0.2:80")
			})
		}
	}
}

func TestNoStateYetReportsTheError(t *testing.T) {
	h := newTestHub(t)
	spec := fakeSpec(nil, FailurePolicy{})
	spec.New = func() (Source, error) { return nil, errors.New("no client") }
	rec := h.join(t, spec)
	rec.WaitErr(t, "no client")
	if len(rec.States()) != 0 {
		t.Errorf("published %v with no registry answer, want nothing", rec.AllAddrs())
	}
}

func TestOneWatchSharedAndLastStateReplayed(t *testing.T) {
	h := newTestHub(t)
	src := newFakeSource()
	var made atomic.Int32
	spec := fakeSpec(src, FailurePolicy{})
	spec.New = func() (Source, error) { made.Add(1); return src, nil }
	var subs []*subscriber
	var recs []*cctest.ClientConn
	for range 100 {
		rec := newRecorder()
		subs = append(subs, h.subscribe("fake:///svc", spec, rec, resolver.BuildOptions{}))
		recs = append(recs, rec)
	}
	src.reset(t, "10.0.0.1:80")
	for _, r := range recs {
		r.WaitAddrsInOrder(t, "10.0.0.1:80")
	}
	if n := made.Load(); n != 1 {
		t.Errorf("100 channels made %d sources, want 1", n)
	}
	// Every channel gone: the watch lingers, and a channel that comes back
	// gets the last state at once, from the same source.
	for _, s := range subs {
		s.Close()
	}
	rec := h.join(t, spec)
	rec.WaitAddrsInOrder(t, "10.0.0.1:80")
	if n := made.Load(); n != 1 {
		t.Errorf("a channel back within the linger made a new source (%d)", n)
	}
	// Past the linger with no channel, the watch stops and closes its
	// source.
	h2 := newTestHub(t)
	src2 := newFakeSource()
	s := h2.subscribe("fake:///svc", fakeSpec(src2, FailurePolicy{}), newRecorder(), resolver.BuildOptions{})
	src2.reset(t, "10.0.0.1:80")
	s.Close()
	h2.clock.Advance(time.Minute)
	h2.mu.Lock()
	n := len(h2.watches)
	h2.mu.Unlock()
	if n != 0 || !src2.closed.Load() {
		t.Errorf("after the linger: %d watches, source closed %v; want 0 and closed", n, src2.closed.Load())
	}
}

func TestWatchErrorsBackOffAndRetry(t *testing.T) {
	h := newTestHub(t)
	src := newFakeSource()
	spec := fakeSpec(src, FailurePolicy{})
	spec.Backoff = Backoff{Base: 100 * time.Millisecond, Max: 400 * time.Millisecond}
	rec := h.join(t, spec)
	src.reset(t, "10.0.0.1:80")
	// The watch that had worked breaks, then each new one breaks before
	// the source sends anything: the waits before each new watch start at
	// Base and double up to Max, each jittered over its upper half, and
	// the watch is asked again only once the time has passed.
	for i, want := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 400 * time.Millisecond} {
		src.do(t, func(Updates) error { return fmt.Errorf("lost leader %d", i) })
		if i == 0 {
			rec.WaitErr(t, "lost leader 0")
		}
		d := nextTimer(t, h.clock)
		if d < want/2 || d > want {
			t.Errorf("wait %d after a failure: %v, want in [%v, %v]", i+1, d, want/2, want)
		}
		if n := src.watches.Load(); n != int32(i+1) {
			t.Fatalf("Watch called %d times before the wait of %v passed, want %d", n, d, i+1)
		}
		h.clock.Advance(d)
	}
	src.reset(t, "10.0.0.2:80")
	rec.WaitAddrsInOrder(t, "10.0.0.2:80")
	if n := src.watches.Load(); n != 5 {
		t.Errorf("Watch called %d times, want 5 (once more after each error)", n)
	}
	// That watch worked: after it breaks, the wait starts at Base again.
	src.do(t, func(Updates) error { return errors.New("lost leader again") })
	if d := nextTimer(t, h.clock); d < 50*time.Millisecond || d > 100*time.Millisecond {
		t.Errorf("wait after a watch that worked: %v, want in [50ms, 100ms]", d)
	}
}

// waitTimer waits until a timer whose duration is ok is made on c.
func waitTimer(t *testing.T, c *clock.Fake, ok func(time.Duration) bool) {
	t.Helper()
	for !ok(nextTimer(t, c)) {
	}
}

// nextTimer returns the duration of the next timer made on c.
func nextTimer(t *testing.T, c *clock.Fake) time.Duration {
	t.Helper()
	select {
	case d := <-c.Timers():
		return d
	case <-time.After(timeout):
		t.Fatal("no timer was made")
		return 0
	}
}

func TestTargetPolicyParams(t *testing.T) {
	for _, tc := range []struct {
		query, want string
	}{
		{"onfailure=failfast", ""},
		{"onfailure=keep&maxstale=30s", ""},
		{"onfailure=fallback&fallback=10.0.0.1:80,10.0.0.2:80", ""},
		{"onfailure=never", `onfailure "never"`},
		{"maxstale=-1s", `maxstale "-1s"`},
		{"onfailure=fallback", "needs at least one"},
		{"onfailure=fallback&fallback=nohost", "fallback address 1"},
		{"onfailure=failfast&maxstale=1s", "does not apply"},
	} {
		q, _ := parseQuery(tc.query)
		_, _, err := splitPolicy(q)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: %v, want %q", tc.query, err, tc.want)
		}
		if err == nil && len(q) != 0 {
			t.Errorf("%s: left %v in the query", tc.query, q)
		}
	}
}

func parseQuery(s string) (map[string][]string, error) {
	q, err := url.ParseQuery(s)
	return q, err
}

// testLogs holds the package's log lines: set once before any test runs.
var testLogs = &logtest.Buffer{}

func TestMain(m *testing.M) {
	grpclog.SetLoggerV2(grpclog.NewLoggerV2(testLogs, io.Discard, io.Discard)) // the first writer gets every severity
	goleak.VerifyTestMain(m)
}

// TestDropsAreLoggedOnceAndSummarised: 1,000 invalid entries log a few
// lines and a summary, and the same entries listed again log nothing.
func TestDropsAreLoggedOnceAndSummarised(t *testing.T) {
	h := newTestHub(t)
	src := newFakeSource()
	rec := h.join(t, fakeSpec(src, FailurePolicy{}))
	list := func() {
		src.do(t, func(u Updates) error {
			insts := []Instance{{ID: "good", Address: "10.0.0.1:80"}}
			for i := range 1000 {
				insts = append(insts, Instance{ID: fmt.Sprintf("bad-%d", i), Address: "nohost"})
			}
			u.Reset(insts, nil)
			u.Flush()
			return nil
		})
	}
	testLogs.Take()
	list()
	rec.WaitAddrsInOrder(t, "10.0.0.1:80")
	first := testLogs.Take()
	if n := strings.Count(first, "dropping bad-"); n != maxDropLines {
		t.Errorf("first listing logged %d entries one by one, want %d:\n%s", n, maxDropLines, first)
	}
	if !strings.Contains(first, "and 995 more entries dropped as invalid (1000 in all now)") {
		t.Errorf("first listing has no summary:\n%s", first)
	}
	list()
	src.do(t, func(Updates) error { return nil }) // the second listing is done
	if again := testLogs.Take(); strings.Contains(again, "dropping") || strings.Contains(again, "more entries") {
		t.Errorf("the same bad entries listed again were logged again:\n%s", again)
	}
}

// metricsRecorder records the counts and gauges it is given, and keeps
// the asynchronous reporters registered with it.
type metricsRecorder struct {
	estats.UnimplementedMetricsRecorder
	mu        sync.Mutex
	values    map[string]int64 // name + labels -> sum (counts) or last (gauges)
	reporters map[int]estats.AsyncMetricReporter
	next      int
}

func (r *metricsRecorder) RecordInt64Count(h *estats.Int64CountHandle, v int64, labels ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.values[h.Descriptor().Name+" "+strings.Join(labels, " ")] += v
}

func (r *metricsRecorder) RecordInt64Gauge(h *estats.Int64GaugeHandle, v int64, labels ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.values[h.Descriptor().Name+" "+strings.Join(labels, " ")] = v
}

func (r *metricsRecorder) RecordInt64AsyncGauge(h *estats.Int64AsyncGaugeHandle, v int64, labels ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.values[h.Descriptor().Name+" "+strings.Join(labels, " ")] = v
}

func (r *metricsRecorder) RegisterAsyncReporter(rep estats.AsyncMetricReporter, _ ...estats.AsyncMetric) func() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.next++
	id := r.next
	r.reporters[id] = rep
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		delete(r.reporters, id)
	}
}

// collect runs the asynchronous reporters, as a metrics collection does.
func (r *metricsRecorder) collect(t *testing.T) int {
	t.Helper()
	r.mu.Lock()
	reps := make([]estats.AsyncMetricReporter, 0, len(r.reporters))
	for _, rep := range r.reporters {
		reps = append(reps, rep)
	}
	r.mu.Unlock()
	for _, rep := range reps {
		if err := rep.Report(r); err != nil {
			t.Fatal(err)
		}
	}
	return len(reps)
}

func (r *metricsRecorder) get(key string) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.values[key]
}

// TestMetricsGoToTheChannelsRecorder: each channel's MetricsRecorder gets
// the updates, errors by kind, instance count, dropped entries by reason
// and staleness its watch gave it; the staleness reporter goes with the
// channel.
func TestMetricsGoToTheChannelsRecorder(t *testing.T) {
	h := newTestHub(t)
	src := newFakeSource()
	m := &metricsRecorder{values: map[string]int64{}, reporters: map[int]estats.AsyncMetricReporter{}}
	rec := newRecorder()
	s := h.subscribe("fake:///svc", fakeSpec(src, FailurePolicy{}), rec, resolver.BuildOptions{MetricsRecorder: m})
	defer s.Close()
	src.do(t, func(u Updates) error {
		u.Reset([]Instance{
			{ID: "a", Address: "10.0.0.1:80"},
			{ID: "b", Address: "10.0.0.2:80"},
			{ID: "bad", Address: "10.0.0.3"}, // no port
		}, []Dropped{{ID: "junk", Reason: errors.New("bad JSON")}})
		u.Flush()
		return nil
	})
	rec.WaitAddrsInOrder(t, "10.0.0.1:80", "10.0.0.2:80")
	const labels = " fake:///svc fake:///svc"
	m.collect(t)
	if got := m.get("lb.discovery.staleness" + labels); got != 0 {
		t.Errorf("staleness while the registry answers = %d ms, want 0", got)
	}
	src.do(t, func(u Updates) error { u.Fail(errors.New("acl")); return nil })
	rec.WaitErr(t, "acl")
	h.clock.Advance(1500 * time.Millisecond)
	if n := m.collect(t); n != 1 {
		t.Fatalf("%d reporters registered, want 1", n)
	}
	for key, want := range map[string]int64{
		"lb.discovery.updates":                           1,
		"lb.discovery.instances":                         2,
		"lb.discovery.errors" + labels + " unavailable":  1,
		"lb.discovery.dropped" + labels + " bad_address": 1,
		"lb.discovery.dropped" + labels + " bad_entry":   1,
		"lb.discovery.staleness":                         1500,
	} {
		if !strings.Contains(key, " ") {
			key += labels
		}
		if got := m.get(key); got != want {
			t.Errorf("%s = %d, want %d (all: %v)", key, got, want, m.values)
		}
	}
	s.Close()
	if n := m.collect(t); n != 0 {
		t.Errorf("%d reporters still registered after Close, want 0", n)
	}
}

func TestErrorKinds(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{errors.New("connection refused"), "unavailable"},
		{fmt.Errorf("listing: %w", context.DeadlineExceeded), "timeout"},
		{fmt.Errorf("etcd: %w", x509.UnknownAuthorityError{}), "tls"},
		{fmt.Errorf("k: %w", ErrNoInstances), "no_instances"},
		{NoInstancesError("no passing instance"), "no_instances"},
		{fmt.Errorf("k: no good answer (%w)", errStale), "stale"},
	} {
		if got := errorKind(tc.err); got != tc.want {
			t.Errorf("errorKind(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

// rejectingCC is a channel whose balancer rejects every state.
type rejectingCC struct{ *cctest.ClientConn }

func (r rejectingCC) UpdateState(s resolver.State) error {
	r.ClientConn.UpdateState(s)
	return errors.New("bad resolver state")
}

// TestRejectedStateAsksToLookAgain: when a balancer rejects a state, a
// polling source is asked to look again, as grpc-go's dns resolver does.
func TestRejectedStateAsksToLookAgain(t *testing.T) {
	h := newTestHub(t)
	src := newFakeSource()
	rec := newRecorder()
	s := h.subscribe("fake:///svc", fakeSpec(src, FailurePolicy{}), rejectingCC{rec}, resolver.BuildOptions{})
	defer s.Close()
	src.reset(t, "10.0.0.1:80")
	rec.WaitAddrsInOrder(t, "10.0.0.1:80")
	src.do(t, func(u Updates) error {
		select {
		case <-u.ResolveNow():
		case <-time.After(timeout):
			t.Error("a rejected state did not ask the source to look again")
		}
		return nil
	})
	// The same answer again: the channel that rejected it gets it again.
	src.reset(t, "10.0.0.1:80")
	rec.Wait(t, "the state given again", func(states []resolver.State, _ []error) bool { return len(states) == 2 })
}

// TestLastGoodOutlivesItsWatch: a watch stopped after its linger leaves its
// last good set to the next watch of the same key, which gives it to its
// channels at once, even with the registry down; a set older than the
// policy's maximum staleness is not used.
func TestLastGoodOutlivesItsWatch(t *testing.T) {
	for _, tc := range []struct {
		name   string
		policy FailurePolicy
		want   []string
	}{
		{"keep", FailurePolicy{}, []string{"10.0.0.1:80"}},
		{"keep for 5s", FailurePolicy{MaxStaleness: 5 * time.Second}, nil},
		{"fail fast", FailurePolicy{Mode: FailFast}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newTestHub(t)
			src := newFakeSource()
			spec := fakeSpec(src, tc.policy)
			s := h.subscribe("fake:///svc", spec, newRecorder(), resolver.BuildOptions{})
			src.reset(t, "10.0.0.1:80")
			s.Close()
			h.clock.Advance(time.Minute) // past the linger: the watch stops
			if n := len(h.watches); n != 0 {
				t.Fatalf("%d watches after the linger, want 0", n)
			}
			down := Spec{Key: spec.Key, Policy: spec.Policy, Backoff: spec.Backoff,
				New: func() (Source, error) { return nil, errors.New("registry down") }}
			rec := h.join(t, down)
			rec.WaitErr(t, "registry down")
			if tc.want == nil {
				if states := rec.States(); len(states) != 0 && len(states[len(states)-1].Endpoints) != 0 {
					t.Errorf("states %v, want no endpoints from a set older than the policy allows", rec.AllAddrs())
				}
				return
			}
			rec.WaitAddrsInOrder(t, tc.want...)
		})
	}
}

// TestLateExpiryTimer: a staleness timer of an earlier failure that fires
// after a recovery and a new failure does not cut the new one short.
func TestLateExpiryTimer(t *testing.T) {
	h := newTestHub(t)
	src := newFakeSource()
	rec := h.join(t, fakeSpec(src, FailurePolicy{MaxStaleness: 5 * time.Second}))
	src.reset(t, "10.0.0.1:80")
	rec.WaitAddrsInOrder(t, "10.0.0.1:80")
	src.do(t, func(u Updates) error { u.Fail(errors.New("first")); return nil })
	rec.WaitErr(t, "first")
	h.clock.Advance(4 * time.Second)
	src.reset(t, "10.0.0.1:80") // recovery
	src.do(t, func(u Updates) error { u.Fail(errors.New("second")); return nil })
	rec.WaitErr(t, "second")
	h.mu.Lock()
	w := h.watches[fakeSpec(src, FailurePolicy{MaxStaleness: 5 * time.Second}).Key].watch
	h.mu.Unlock()
	h.clock.Advance(1 * time.Second)
	w.expire() // the first failure's timer, running late
	// The view the channels are offered, as expire left it (a channel is
	// given it in its own goroutine, and skips it if a newer one comes).
	w.mu.Lock()
	st := w.view.state
	w.mu.Unlock()
	if st == nil || len(st.Endpoints) == 0 {
		t.Errorf("a late timer of the first failure emptied the state 1s into the second")
	}
}

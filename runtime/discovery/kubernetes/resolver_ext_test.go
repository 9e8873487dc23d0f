package kubernetes_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/load"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/resolvertest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/testbackend"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/kubernetes"
)

// TestEndpoints follows one Service through its slices: 3 ready endpoints
// all get calls; one set not ready gets no call from 1 s after the update
// on; with no ready endpoint left, a serving and terminating one keeps
// getting them; a second slice adds its endpoints; a deleted slice takes
// only its own.
func TestEndpoints(t *testing.T) {
	e := newEnv(t)
	eps := e.backends(1, 3)
	e.put(e.slice("greeter", "greeter-a", discoveryv1.AddressTypeIPv4, eps))
	c := e.dial(e.target("greeter"))
	e.waitInstances("greeter", eps[0].ip, eps[1].ip, eps[2].ip)
	if got := calls(t, c, 300, eps); len(got) != 3 {
		t.Fatalf("3 ready endpoints: calls went to %v, want all 3", got)
	}

	// One not ready: no new call to it from 1 s after the update on.
	eps[2].ready = false
	updated := time.Now()
	e.put(e.slice("greeter", "greeter-a", discoveryv1.AddressTypeIPv4, eps))
	last := lastCallTo(t, c, eps[2].b)
	if d := last.Sub(updated); d > time.Second {
		t.Errorf("not ready: its last call came %v after the update, want within 1s", d)
	}
	t.Logf("not ready: last call %v after the update", last.Sub(updated).Round(time.Millisecond))

	// None ready, one serving and terminating: it keeps getting calls.
	eps[0].ready, eps[0].terminating = false, true
	eps[1].ready = false
	eps[1].serving = false
	eps[2].serving = false
	e.put(e.slice("greeter", "greeter-a", discoveryv1.AddressTypeIPv4, eps))
	e.waitInstances("greeter", eps[0].ip)
	settle(t, c, eps[0])
	if got := calls(t, c, 100, eps); got[eps[0].ip] != 100 {
		t.Fatalf("no ready endpoint: calls went to %v, want all to the serving, terminating %s", got, eps[0].ip)
	}
	// A ready one back: the terminating one gets no more.
	eps[1].ready, eps[1].serving = true, true
	e.put(e.slice("greeter", "greeter-a", discoveryv1.AddressTypeIPv4, eps))
	e.waitInstances("greeter", eps[1].ip)
	settle(t, c, eps[1])

	// A second slice: the endpoints of both.
	more := e.backends(11, 2)
	e.put(e.slice("greeter", "greeter-b", discoveryv1.AddressTypeIPv4, more))
	e.waitInstances("greeter", eps[1].ip, more[0].ip, more[1].ip)
	settle(t, c, eps[1], more[0], more[1])
	all := append(append([]ep{}, eps...), more...)
	if got := calls(t, c, 300, all); len(got) != 3 || got[eps[1].ip] == 0 || got[more[0].ip] == 0 || got[more[1].ip] == 0 {
		t.Fatalf("two slices: calls went to %v, want %s and both of the second slice", got, eps[1].ip)
	}
	// The first slice deleted: only its endpoint leaves.
	e.deleteSlice("greeter-a")
	e.waitInstances("greeter", more[0].ip, more[1].ip)
	settle(t, c, more...)
	if got := calls(t, c, 100, all); len(got) != 2 || got[eps[1].ip] != 0 {
		t.Fatalf("first slice deleted: calls went to %v, want the second slice's only", got)
	}
}

// lastCallTo makes calls through c until b has had none for 300 calls in a
// row, and returns when its last call was answered.
func lastCallTo(t *testing.T, c grpc.ClientConnInterface, b *testbackend.Backend) time.Time {
	t.Helper()
	last, n := time.Now(), b.Calls.Load()
	deadline := time.Now().Add(resolvertest.Timeout)
	for quiet := 0; quiet < 300; quiet++ {
		if time.Now().After(deadline) {
			t.Fatalf("calls still reach %s after %v", b.Addr, resolvertest.Timeout)
		}
		ctx, cancel := context.WithTimeout(context.Background(), resolvertest.Timeout)
		err := testbackend.Call(ctx, c)
		cancel()
		if err != nil {
			t.Fatalf("call: %v", err)
		}
		if m := b.Calls.Load(); m != n {
			last, n, quiet = time.Now(), m, 0
		}
	}
	return last
}

// TestIPv6AndMetadata: an IPv6 slice and an IPv4 slice of one Service are
// merged; zones and nodes reach the metadata.
func TestIPv6AndMetadata(t *testing.T) {
	e := newEnv(t)
	v4 := e.backends(21, 1)
	v4[0].zone, v4[0].node = "zone-a", "node-1"
	b := testbackend.Start(t)
	e.dialer.add(net.JoinHostPort("2001:db8::1", strconv.Itoa(port)), b.Addr)
	v6 := []ep{{b: b, ip: "2001:db8::1", ready: true, serving: true, zone: "zone-b", node: "node-2"}}
	e.put(e.slice("dual", "dual-v4", discoveryv1.AddressTypeIPv4, v4))
	e.put(e.slice("dual", "dual-v6", discoveryv1.AddressTypeIPv6, v6))
	c := e.dial(e.target("dual"))
	w := e.waitInstances("dual", v4[0].ip, "2001:db8::1")
	for _, in := range w.Endpoints {
		want := map[string][2]string{"198.51.100.21:50051": {"zone-a", "node-1"}, "[2001:db8::1]:50051": {"zone-b", "node-2"}}[in.Address]
		if in.Metadata.Zone != want[0] || in.Metadata.Custom[kubernetes.NodeKey] != want[1] {
			t.Errorf("%s: zone %q node %q, want %q %q", in.Address, in.Metadata.Zone, in.Metadata.Custom[kubernetes.NodeKey], want[0], want[1])
		}
	}
	if got := calls(t, c, 100, append(v4, v6...)); len(got) != 2 {
		t.Fatalf("calls went to %v, want both", got)
	}
}

// TestRollingUpdate simulates a Deployment's rolling update in the slices,
// one pod at a time (maxSurge 1, maxUnavailable 0): a new pod added ready,
// an old one marked terminating (serving, not ready), stopped gracefully
// once the client no longer lists it, then removed; under 200 calls a
// second, no call fails.
func TestRollingUpdate(t *testing.T) {
	e := newEnv(t)
	old := e.backends(31, 3)
	e.put(e.slice("roll", "roll-a", discoveryv1.AddressTypeIPv4, old))
	c := e.dial(e.target("roll"))
	e.waitInstances("roll", old[0].ip, old[1].ip, old[2].ip)
	l := load.StartRate(200, load.CallTimeout, func(ctx context.Context) error { return testbackend.Call(ctx, c) })
	cur := append([]ep{}, old...)
	for i := range 3 {
		nu := e.backends(41+i, 1)[0]
		cur = append(cur, nu)
		e.put(e.slice("roll", "roll-a", discoveryv1.AddressTypeIPv4, cur))
		// The old pod gets its SIGTERM: terminating, not ready.
		cur[0].ready, cur[0].terminating = false, true
		e.put(e.slice("roll", "roll-a", discoveryv1.AddressTypeIPv4, cur))
		var ips []string
		for _, p := range cur[1:] {
			ips = append(ips, p.ip)
		}
		e.waitInstances("roll", ips...)
		// Traffic moves on: the new pod takes 50 calls before the old one
		// stops.
		waitCalls(t, nu.b, 50)
		cur[0].b.GracefulStop()
		cur = cur[1:]
		e.put(e.slice("roll", "roll-a", discoveryv1.AddressTypeIPv4, cur))
	}
	n, failed, first := l.Stop()
	t.Logf("rolling update: %d calls, %d failed", n, failed)
	if failed > 0 {
		t.Errorf("rolling update: %d of %d calls failed, first: %v", failed, n, first)
	}
}

// TestAPIServerDown stops the API server for 10 s under load: no call
// fails, and the view catches a change within 2 s of the API server's
// return.
func TestAPIServerDown(t *testing.T) {
	e := newEnv(t)
	eps := e.backends(51, 2)
	e.put(e.slice("down", "down-a", discoveryv1.AddressTypeIPv4, eps))
	c := e.dial(e.target("down"))
	e.waitInstances("down", eps[0].ip, eps[1].ip)
	l := load.Start(4, func(ctx context.Context) error { return testbackend.Call(ctx, c) })
	api.StopAPIServer()
	stopped := time.Now()
	// The watch sees it go: an error, the set kept.
	resolvertest.WaitWatch(t, kubernetes.Scheme, e.ns+"/down", func(w discovery.WatchInfo) bool { return w.Err != nil && w.Instances == 2 })
	time.Sleep(10*time.Second - time.Since(stopped)) // the outage's length, not a wait for an event
	if err := api.RestartAPIServer(); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	more := e.backends(61, 1)
	e.put(e.slice("down", "down-b", discoveryv1.AddressTypeIPv4, more))
	e.waitInstances("down", eps[0].ip, eps[1].ip, more[0].ip)
	took := time.Since(back)
	n, failed, first := l.Stop()
	t.Logf("API server down 10s: %d calls, %d failed; a change seen %v after its return", n, failed, took.Round(time.Millisecond))
	if failed > 0 {
		t.Errorf("%d of %d calls failed, first: %v", failed, n, first)
	}
	if took > 2*time.Second {
		t.Errorf("the view caught up %v after the API server's return, want within 2s", took)
	}
}

// TestRBAC: a client that may not list is told which permission and which
// rule it lacks; one that loses watch keeps its last good set and says so.
func TestRBAC(t *testing.T) {
	e := newEnv(t)
	// The API server ends every watch after a second, and the client
	// opens it again: with the permission it has then.
	kubernetes.SetWatchTimeout(t, time.Second)
	eps := e.backends(71, 2)
	e.put(e.slice("rbac", "rbac-a", discoveryv1.AddressTypeIPv4, eps))
	target := "kubernetes:///rbac." + e.ns + ":grpc?kubeconfig=" + e.clientConfig
	c := e.dial(target)
	w := resolvertest.WaitWatch(t, kubernetes.Scheme, e.ns+"/rbac", func(w discovery.WatchInfo) bool { return w.Err != nil })
	for _, want := range []string{`"list"`, "endpointslices", e.ns, `verbs: ["list", "watch"]`, "lb-client"} {
		if !strings.Contains(w.Err.Error(), want) {
			t.Errorf("error %q lacks %s", w.Err, want)
		}
	}
	if !errors.Is(w.Err, kubernetes.ErrForbidden) {
		t.Errorf("error %v is not ErrForbidden", w.Err)
	}
	e.allowClient("list", "watch")
	e.waitInstances("rbac", eps[0].ip, eps[1].ip)
	settle(t, c, eps...)

	// Watch taken away: the next watch is refused, and a list too is
	// no use without it.
	e.allowClient("list")
	more := e.backends(81, 1)
	e.put(e.slice("rbac", "rbac-b", discoveryv1.AddressTypeIPv4, more))
	w = resolvertest.WaitWatch(t, kubernetes.Scheme, e.ns+"/rbac", func(w discovery.WatchInfo) bool {
		return w.Err != nil && strings.Contains(w.Err.Error(), `"watch"`)
	})
	t.Logf("without watch: %v", w.Err)
	if w.Instances != 2 && w.Instances != 3 {
		t.Errorf("without watch: %d instances, want the last good set", w.Instances)
	}
	if got := calls(t, c, 50, append(eps, more...)); got[eps[0].ip]+got[eps[1].ip] == 0 {
		t.Errorf("without watch: calls went to %v, want the last good set", got)
	}
}

// waitCalls polls b's call count (another goroutine's calls: there is no
// event to wait on) until it took n more calls.
func waitCalls(t *testing.T, b *testbackend.Backend, n int64) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(resolvertest.Timeout)
	for start := b.Calls.Load(); b.Calls.Load()-start < n; {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("%s took %d calls in %v, want %d", b.Addr, b.Calls.Load()-start, resolvertest.Timeout, n)
		}
	}
}

package dns_test

import (
	"context"
	"errors"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/resolver"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/cctest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/resolvertest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/dns"
)

func TestMain(m *testing.M) { resolvertest.VerifyTestMain(m) }

const deadline = 10 * time.Second

// fakeNet answers lookups from fields the test sets, and records when each
// lookup happened.
type fakeNet struct {
	mu      sync.Mutex
	hosts   map[string][]string // guarded by mu
	srvs    []*net.SRV          // guarded by mu
	err     error               // guarded by mu
	times   []time.Time         // guarded by mu; one per LookupHost/LookupSRV of the name
	lookups chan struct{}
}

func newFakeNet() *fakeNet {
	return &fakeNet{hosts: map[string][]string{}, lookups: make(chan struct{}, 100)}
}

func (f *fakeNet) set(fn func(f *fakeNet)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeNet) record() {
	f.times = append(f.times, time.Now())
	select {
	case f.lookups <- struct{}{}:
	default:
	}
}

func (f *fakeNet) LookupHost(_ context.Context, host string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if host == "svc.test" {
		f.record()
		if f.err != nil {
			return nil, f.err
		}
	}
	ips, ok := f.hosts[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return ips, nil
}

func (f *fakeNet) LookupSRV(context.Context, string, string, string) (string, []*net.SRV, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record()
	return "", f.srvs, f.err
}

// drain forgets the lookups so far.
func (f *fakeNet) drain() {
	for {
		select {
		case <-f.lookups:
		default:
			return
		}
	}
}

func (f *fakeNet) waitLookups(t *testing.T, n int) {
	t.Helper()
	timer := time.NewTimer(deadline)
	defer timer.Stop()
	for range n {
		select {
		case <-f.lookups:
		case <-timer.C:
			t.Fatalf("fewer than %d lookups within %v", n, deadline)
		}
	}
}

func build(t *testing.T, target string, f *fakeNet, opts ...dns.Option) *cctest.ClientConn {
	t.Helper()
	opts = append(opts, dns.WithNetResolver(func(string) dns.NetResolver { return f }))
	return cctest.Build(t, dns.NewBuilder(opts...), target)
}

func TestARecordsRefresh(t *testing.T) {
	f := newFakeNet()
	f.set(func(f *fakeNet) { f.hosts["svc.test"] = []string{"10.0.0.2", "10.0.0.1", "10.0.0.2"} })
	cc := build(t, "lbdns:///svc.test:8080?refresh=10ms", f)

	// The first state: de-duplicated, sorted endpoints.
	s := cc.WaitAddrsInOrder(t, "10.0.0.1:8080", "10.0.0.2:8080")
	if len(s.Addresses) != len(s.Endpoints) {
		t.Errorf("state has %d Addresses for %d Endpoints, want both filled", len(s.Addresses), len(s.Endpoints))
	}

	// Unchanged answers publish nothing new.
	f.waitLookups(t, 3)
	if n := len(cc.States()); n != 1 {
		t.Fatalf("unchanged answers published %d states, want 1", n)
	}

	f.set(func(f *fakeNet) { f.hosts["svc.test"] = []string{"10.0.0.1", "10.0.0.3"} })
	cc.WaitAddrs(t, "10.0.0.1:8080", "10.0.0.3:8080")
}

func TestFailedLookupKeepsLastState(t *testing.T) {
	f := newFakeNet()
	f.set(func(f *fakeNet) { f.hosts["svc.test"] = []string{"10.0.0.1"} })
	cc := build(t, "lbdns:///svc.test:80?refresh=10ms", f)
	cc.WaitAddrs(t, "10.0.0.1:80")

	f.set(func(f *fakeNet) { f.err = errors.New("SERVFAIL") })
	cc.Wait(t, "a failed lookup reported", func(_ []resolver.State, errs []error) bool { return len(errs) >= 1 })
	if err := cc.Errors()[0]; !strings.Contains(err.Error(), "SERVFAIL") || !strings.Contains(err.Error(), "svc.test") {
		t.Errorf("reported error = %v, want one naming the name and the cause", err)
	}
	// The same error again is not reported again.
	f.drain()
	f.waitLookups(t, 2)
	if errs := cc.Errors(); len(errs) != 1 {
		t.Errorf("one error failing 3 lookups was reported %d times (%v), want once", len(errs), errs)
	}

	f.set(func(f *fakeNet) { f.err = nil; f.hosts["svc.test"] = []string{} })
	cc.Wait(t, "an empty answer reported", func(_ []resolver.State, errs []error) bool {
		return errors.Is(errs[len(errs)-1], dns.ErrNoAddresses)
	})
	if n := len(cc.States()); n != 1 {
		t.Fatalf("published %d states during failures, want the last good state kept", n)
	}

	f.set(func(f *fakeNet) { f.hosts["svc.test"] = []string{"10.0.0.9"} })
	cc.WaitAddrs(t, "10.0.0.9:80")
}

func TestSRVDropsBadRecordsAndKeepsWeights(t *testing.T) {
	f := newFakeNet()
	f.set(func(f *fakeNet) {
		f.hosts["a.test."] = []string{"10.0.0.1"}
		f.hosts["b.test."] = []string{"10.0.0.2", "fd00::2"}
		f.srvs = []*net.SRV{
			{Target: "a.test.", Port: 9000, Weight: 5, Priority: 2},
			{Target: "gone.test.", Port: 9000},      // does not resolve: dropped
			{Target: "b.test.", Port: 0, Weight: 1}, // port 0: dropped
			{Target: "b.test.", Port: 9001, Weight: 2, Priority: 1},
		}
	})
	cc := build(t, "lbdns://127.0.0.1:8600/svc.service.consul?record=srv", f)
	// SRV priority order is kept: b (priority 1) before a (priority 2).
	s := cc.WaitAddrsInOrder(t, "10.0.0.2:9001", "[fd00::2]:9001", "10.0.0.1:9000")
	md, ok := discovery.MetadataOf(s.Endpoints[2])
	if !ok || md.Weight != 5 {
		t.Errorf("metadata of %s = %+v, %v; want weight 5", cctest.Addrs(s)[2], md, ok)
	}
}

func TestResolveNowIsRateLimited(t *testing.T) {
	const minInterval = 50 * time.Millisecond
	f := newFakeNet()
	f.set(func(f *fakeNet) { f.hosts["svc.test"] = []string{"10.0.0.1"} })
	u, _ := url.Parse("lbdns:///svc.test:80?refresh=1h")
	cc := cctest.New()
	r, err := dns.NewBuilder(dns.WithNetResolver(func(string) dns.NetResolver { return f }),
		dns.WithMinResolveInterval(minInterval)).Build(resolver.Target{URL: *u}, cc, resolver.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cc.WaitAddrs(t, "10.0.0.1:80")
	// Ask without pause until 4 lookups happened; they must be spaced.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
				r.ResolveNow(resolver.ResolveNowOptions{})
			}
		}
	}()
	f.waitLookups(t, 4)
	close(stop)
	<-done
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := 1; i < len(f.times); i++ {
		if gap := f.times[i].Sub(f.times[i-1]); gap < minInterval {
			t.Errorf("lookups %d and %d were %v apart, want at least %v", i-1, i, gap, minInterval)
		}
	}
}

func TestBadTargets(t *testing.T) {
	for _, tc := range []struct{ target, want string }{
		{"lbdns:///svc.test", "want host:port"},
		{"lbdns:///svc.test:http", `port "http"`},
		{"lbdns:///svc.test:0", `port "0"`},
		{"lbdns:///svc.test:80?record=mx", `record "mx"`},
		{"lbdns:///svc.test:80?refresh=-1s", `refresh "-1s"`},
		{"lbdns:///svc.test:80?refresh=soon", `refresh "soon"`},
		{"lbdns:///svc.test:80?token=x", `unknown parameter "token"`},
		{"lbdns:///svc.test:80?record=srv", "port is not allowed"},
		{"lbdns:///?record=srv", "empty name"},
		{"lbdns://8600/svc.test:80", "DNS server"},
		{"lbdns://user:S3CRET@127.0.0.1:53/svc.test:80?token=T0KEN", "user info"},
		{"lbdns://127.0.0.1:53/svc.test:80?token=T0KEN", `unknown parameter "token"`},
	} {
		u, err := url.Parse(tc.target)
		if err != nil {
			t.Fatal(err)
		}
		_, err = dns.NewBuilder().Build(resolver.Target{URL: *u}, cctest.New(), resolver.BuildOptions{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Build(%s) = %v, want an error containing %q", tc.target, err, tc.want)
		}
		if err != nil && (strings.Contains(err.Error(), "S3CRET") || strings.Contains(err.Error(), "T0KEN")) {
			t.Errorf("Build(%s) = %v: the error shows a secret of the target", tc.target, err)
		}
	}
}

func TestConfigTarget(t *testing.T) {
	for _, tc := range []struct {
		cfg      dns.Config
		registry string
		want     string
	}{
		{dns.Config{Host: "a.internal", Port: 80}, "", "lbdns:///a.internal:80"},
		{dns.Config{Host: "a.internal", Port: 80, Refresh: 5 * time.Second}, "", "lbdns:///a.internal:80?refresh=5s"},
		{dns.Config{Host: "a.service.consul", SRV: true, Server: "127.0.0.1:8600"}, "", "lbdns://127.0.0.1:8600/a.service.consul?record=srv"},
		{dns.Config{Host: "a.service.consul", SRV: true, Server: "127.0.0.1:8600"}, "10.0.0.1:53", "lbdns://10.0.0.1:53/a.service.consul?record=srv"},
	} {
		got, err := tc.cfg.Target("svc", tc.registry)
		if err != nil || got != tc.want {
			t.Errorf("%+v.Target(%q) = %q, %v; want %q", tc.cfg, tc.registry, got, err, tc.want)
		}
	}
	if _, err := (dns.Config{Host: "a.internal"}).Target("svc", ""); err == nil {
		t.Error("Target of an A config without port succeeded, want an error")
	}
}

// TestErrorsNameTheConfiguredServer: net names the system's DNS server in
// its errors even when the query went to the one the target names.
func TestErrorsNameTheConfiguredServer(t *testing.T) {
	f := newFakeNet()
	f.set(func(f *fakeNet) {
		f.err = &net.DNSError{Err: "server misbehaving", Name: "svc.test", Server: "192.0.2.53:53"}
	})
	cc := build(t, "lbdns://127.0.0.1:8600/svc.test:80", f)
	cc.Wait(t, "an error", func(_ []resolver.State, errs []error) bool { return len(errs) > 0 })
	if err := cc.Errors()[0]; !strings.Contains(err.Error(), "127.0.0.1:8600") || strings.Contains(err.Error(), "192.0.2.53") {
		t.Errorf("error %q, want it to name the configured server 127.0.0.1:8600, not the system's", err)
	}
}

// TestFailurePolicyParams: the failure policy in a target's parameters, as
// plain grpc.NewClient users give it.
func TestFailurePolicyParams(t *testing.T) {
	for _, tc := range []struct {
		params string
		want   []string
	}{
		{"", []string{"10.0.0.1:80"}},
		{"&onfailure=failfast", nil},
		{"&onfailure=fallback&fallback=10.9.9.9:80,10.9.9.8:80", []string{"10.9.9.9:80", "10.9.9.8:80"}},
	} {
		for _, failure := range []string{"SERVFAIL", "empty"} {
			f := newFakeNet()
			f.set(func(f *fakeNet) { f.hosts["svc.test"] = []string{"10.0.0.1"} })
			cc := build(t, "lbdns:///svc.test:80?refresh=10ms"+tc.params, f)
			cc.WaitAddrs(t, "10.0.0.1:80")
			f.set(func(f *fakeNet) {
				if failure == "empty" {
					f.hosts["svc.test"] = nil
				} else {
					f.err = errors.New("SERVFAIL")
				}
			})
			cc.Wait(t, "the failure reported", func(_ []resolver.State, errs []error) bool { return len(errs) > 0 })
			cc.WaitAddrsInOrder(t, tc.want...)
			f.set(func(f *fakeNet) { f.err = nil; f.hosts["svc.test"] = []string{"10.0.0.2"} })
			cc.WaitAddrs(t, "10.0.0.2:80")
		}
	}
}

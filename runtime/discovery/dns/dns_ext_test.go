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

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
	"google.golang.org/grpc/resolver"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/dns"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

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

// fakeCC is the channel side of a resolver: it records states and errors.
type fakeCC struct {
	resolver.ClientConn
	states chan resolver.State
	errs   chan error
	closed chan struct{}
}

func newFakeCC() *fakeCC {
	return &fakeCC{states: make(chan resolver.State, 100), errs: make(chan error, 100), closed: make(chan struct{})}
}

func (cc *fakeCC) UpdateState(s resolver.State) error {
	select {
	case <-cc.closed:
		panic("UpdateState after Close")
	default:
	}
	cc.states <- s
	return nil
}

func (cc *fakeCC) ReportError(err error) {
	select {
	case <-cc.closed:
		panic("ReportError after Close")
	default:
	}
	cc.errs <- err
}

func (cc *fakeCC) nextState(t *testing.T) resolver.State {
	t.Helper()
	select {
	case s := <-cc.states:
		return s
	case <-time.After(deadline):
		t.Fatalf("no state update within %v", deadline)
		return resolver.State{}
	}
}

func (cc *fakeCC) nextError(t *testing.T) error {
	t.Helper()
	select {
	case err := <-cc.errs:
		return err
	case <-time.After(deadline):
		t.Fatalf("no error report within %v", deadline)
		return nil
	}
}

func build(t *testing.T, target string, f *fakeNet, opts ...dns.Option) *fakeCC {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	cc := newFakeCC()
	opts = append(opts, dns.WithNetResolver(func(string) dns.NetResolver { return f }))
	r, err := dns.NewBuilder(opts...).Build(resolver.Target{URL: *u}, cc, resolver.BuildOptions{})
	if err != nil {
		t.Fatalf("Build(%s) = %v", target, err)
	}
	t.Cleanup(func() {
		r.Close()
		close(cc.closed) // from here on, an update panics
	})
	return cc
}

func addrs(s resolver.State) []string {
	var out []string
	for _, ep := range s.Endpoints {
		out = append(out, ep.Addresses[0].Addr)
	}
	return out
}

func TestARecordsRefresh(t *testing.T) {
	f := newFakeNet()
	f.set(func(f *fakeNet) { f.hosts["svc.test"] = []string{"10.0.0.2", "10.0.0.1", "10.0.0.2"} })
	cc := build(t, "lbdns:///svc.test:8080?refresh=10ms", f)

	s := cc.nextState(t)
	if diff := cmp.Diff([]string{"10.0.0.1:8080", "10.0.0.2:8080"}, addrs(s)); diff != "" {
		t.Errorf("first state: de-duplicated, sorted endpoints (-want +got):\n%s", diff)
	}
	if len(s.Addresses) != len(s.Endpoints) {
		t.Errorf("state has %d Addresses for %d Endpoints, want both filled", len(s.Addresses), len(s.Endpoints))
	}

	// Unchanged answers publish nothing new.
	f.waitLookups(t, 3)
	select {
	case s := <-cc.states:
		t.Fatalf("unchanged answer published again: %v", addrs(s))
	default:
	}

	f.set(func(f *fakeNet) { f.hosts["svc.test"] = []string{"10.0.0.1", "10.0.0.3"} })
	s = cc.nextState(t)
	if diff := cmp.Diff([]string{"10.0.0.1:8080", "10.0.0.3:8080"}, addrs(s)); diff != "" {
		t.Errorf("state after refresh (-want +got):\n%s", diff)
	}
}

func TestFailedLookupKeepsLastState(t *testing.T) {
	f := newFakeNet()
	f.set(func(f *fakeNet) { f.hosts["svc.test"] = []string{"10.0.0.1"} })
	cc := build(t, "lbdns:///svc.test:80?refresh=10ms", f)
	cc.nextState(t)

	f.set(func(f *fakeNet) { f.err = errors.New("SERVFAIL") })
	if err := cc.nextError(t); !strings.Contains(err.Error(), "SERVFAIL") || !strings.Contains(err.Error(), "svc.test") {
		t.Errorf("reported error = %v, want one naming the name and the cause", err)
	}
	cc.nextError(t) // a second failed lookup: still no state

	f.set(func(f *fakeNet) { f.err = nil; f.hosts["svc.test"] = []string{} })
	for {
		err := cc.nextError(t)
		if errors.Is(err, dns.ErrNoAddresses) {
			break
		}
	}
	select {
	case s := <-cc.states:
		t.Fatalf("published %v during failures, want the last good state kept", addrs(s))
	default:
	}

	f.set(func(f *fakeNet) { f.hosts["svc.test"] = []string{"10.0.0.9"} })
	if got := addrs(cc.nextState(t)); len(got) != 1 || got[0] != "10.0.0.9:80" {
		t.Errorf("state after recovery = %v, want [10.0.0.9:80]", got)
	}
}

func TestSRVDropsBadRecordsAndKeepsWeights(t *testing.T) {
	f := newFakeNet()
	f.set(func(f *fakeNet) {
		f.hosts["a.test."] = []string{"10.0.0.1"}
		f.hosts["b.test."] = []string{"10.0.0.2", "fd00::2"}
		f.srvs = []*net.SRV{
			{Target: "a.test.", Port: 9000, Weight: 5},
			{Target: "gone.test.", Port: 9000},      // does not resolve: dropped
			{Target: "b.test.", Port: 0, Weight: 1}, // port 0: dropped
			{Target: "b.test.", Port: 9001, Weight: 2},
		}
	})
	cc := build(t, "lbdns://127.0.0.1:8600/svc.service.consul?record=srv", f)
	s := cc.nextState(t)
	if diff := cmp.Diff([]string{"10.0.0.1:9000", "10.0.0.2:9001", "[fd00::2]:9001"}, addrs(s)); diff != "" {
		t.Errorf("SRV endpoints (-want +got):\n%s", diff)
	}
	md, ok := discovery.MetadataOf(s.Endpoints[0])
	if !ok || md.Weight != 5 {
		t.Errorf("metadata of %s = %+v, %v; want weight 5", addrs(s)[0], md, ok)
	}
}

func TestResolveNowIsRateLimited(t *testing.T) {
	const minInterval = 50 * time.Millisecond
	f := newFakeNet()
	f.set(func(f *fakeNet) { f.hosts["svc.test"] = []string{"10.0.0.1"} })
	u, _ := url.Parse("lbdns:///svc.test:80?refresh=1h")
	cc := newFakeCC()
	r, err := dns.NewBuilder(dns.WithNetResolver(func(string) dns.NetResolver { return f }),
		dns.WithMinResolveInterval(minInterval)).Build(resolver.Target{URL: *u}, cc, resolver.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cc.nextState(t)
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
	} {
		u, err := url.Parse(tc.target)
		if err != nil {
			t.Fatal(err)
		}
		_, err = dns.NewBuilder().Build(resolver.Target{URL: *u}, newFakeCC(), resolver.BuildOptions{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Build(%s) = %v, want an error containing %q", tc.target, err, tc.want)
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

package etcd_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/load"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/resolvertest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/testbackend"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/etcd"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/lb"
)

// TestFailurePolicies: with live backends, every key deleted or every value
// made invalid does what the declared policy says, under load: keep last
// good fails no call, fail fast fails with UNAVAILABLE, static fallback
// calls the fallback. Each recovers when the instances return.
func TestFailurePolicies(t *testing.T) {
	s := startEtcd(t)
	raw := rawClient(t, s.Endpoint())
	backends := []*testbackend.Backend{testbackend.Start(t), testbackend.Start(t)}
	fallback := testbackend.Start(t)
	for i, tc := range []struct {
		name   string
		policy discovery.FailurePolicy
	}{
		{"keep", discovery.FailurePolicy{}},
		{"failfast", discovery.FailurePolicy{Mode: discovery.FailFast}},
		{"fallback", discovery.FailurePolicy{Mode: discovery.StaticFallback, Fallback: []string{fallback.Addr}}},
	} {
		for _, failure := range []string{"deleted", "invalid"} {
			t.Run(tc.name+"/"+failure, func(t *testing.T) {
				service := fmt.Sprintf("policy-%d-%s", i, failure)
				prefix := "/services/" + service
				put := func() {
					for j, b := range backends {
						if _, err := raw.Put(ctxT(t), fmt.Sprintf("%s/%d", prefix, j), b.Addr); err != nil {
							t.Fatal(err)
						}
					}
				}
				put()
				policy := tc.policy
				c, err := lb.Dial(ctxT(t), &lb.Service{Name: service, Discovery: etcd.Config{Endpoints: []string{s.Endpoint()}}, Failure: &policy}, lb.WithInsecure(), lb.WithBlock())
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				l := load.Start(2, func(ctx context.Context) error { return testbackend.Call(ctx, c) })
				defer l.Stop()

				broken := time.Now()
				for j := range backends {
					key := fmt.Sprintf("%s/%d", prefix, j)
					var err error
					if failure == "deleted" {
						_, err = raw.Delete(ctxT(t), key)
					} else {
						_, err = raw.Put(ctxT(t), key, `{"Addr": "nohost"}`)
					}
					if err != nil {
						t.Fatal(err)
					}
				}
				w := resolvertest.WaitWatch(t, etcd.Scheme, prefix, func(w discovery.WatchInfo) bool { return w.Err != nil })
				t.Logf("failure seen after %v: %v", time.Since(broken), w.Err)

				switch policy.Mode {
				case discovery.KeepLastGood:
					before := l.Failed()
					for range 100 {
						if err := testbackend.Call(ctxT(t), c); err != nil {
							t.Fatalf("call with keep-last-good: %v", err)
						}
					}
					if n := l.Failed() - before; n != 0 || l.Failed() != 0 {
						t.Errorf("%d calls failed with keep-last-good while the backends were up", l.Failed())
					}
				case discovery.FailFast:
					for {
						err := testbackend.Call(ctxT(t), c)
						if status.Code(err) == codes.Unavailable {
							t.Logf("UNAVAILABLE %v after the failure", time.Since(broken))
							break
						}
						if time.Since(broken) > timeout {
							t.Fatalf("calls still end with %v, want UNAVAILABLE", err)
						}
					}
				case discovery.StaticFallback:
					for n := fallback.Calls.Load(); fallback.Calls.Load() < n+10; {
						if err := testbackend.Call(ctxT(t), c); err != nil && time.Since(broken) > timeout {
							t.Fatalf("calls do not reach the fallback: %v", err)
						}
					}
					t.Logf("fallback called %v after the failure", time.Since(broken))
				}

				l.Stop()
				recovered := time.Now()
				put()
				for n := backends[0].Calls.Load(); backends[0].Calls.Load() < n+5; {
					testbackend.Call(ctxT(t), c)
					if time.Since(recovered) > timeout {
						t.Fatal("no recovery")
					}
				}
				t.Logf("recovered %v after the instances returned", time.Since(recovered))
			})
		}
	}
}

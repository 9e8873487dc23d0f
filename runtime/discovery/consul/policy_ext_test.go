package consul_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/load"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/resolvertest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/consul"
)

// TestFailurePolicies: with live backends, every check critical does what
// the declared policy says, under load: keep last good fails no call, fail
// fast fails with UNAVAILABLE, static fallback calls the fallback. Each
// recovers when the checks pass again.
func TestFailurePolicies(t *testing.T) {
	a := startAgent(t, "")
	agent, err := api.NewClient(&api.Config{Address: a.HTTPAddr(), Token: os.Getenv("CONSUL_HTTP_TOKEN")})
	if err != nil {
		t.Fatal(err)
	}
	backends := []*backend{startBackend(t, testService(a.HTTPAddr(), consul.Config{})), startBackend(t, testService(a.HTTPAddr(), consul.Config{}))}
	fallback := startBackend(t, testService(a.HTTPAddr(), consul.Config{}))
	for i, policy := range []discovery.FailurePolicy{
		{},
		{Mode: discovery.FailFast},
		{Mode: discovery.StaticFallback, Fallback: []string{fallback.addr}},
	} {
		t.Run(policy.Mode.String(), func(t *testing.T) {
			service := fmt.Sprintf("policy-%d", i)
			// The instances are the live backends, with a TTL check the test
			// passes and fails.
			setChecks := func(status string) {
				for j := range backends {
					if err := agent.Agent().UpdateTTL(fmt.Sprintf("%s-%d:ttl", service, j), "", status); err != nil {
						t.Fatal(err)
					}
				}
			}
			for j, b := range backends {
				host, port := splitAddr(t, b.addr)
				id := fmt.Sprintf("%s-%d", service, j)
				if err := agent.Agent().ServiceRegister(&api.AgentServiceRegistration{
					ID: id, Name: service, Address: host, Port: port,
					Check: &api.AgentServiceCheck{CheckID: id + ":ttl", TTL: "1h"},
				}); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { agent.Agent().ServiceDeregister(id) })
			}
			setChecks(api.HealthPassing)
			svc := testService(a.HTTPAddr(), consul.Config{})
			svc.Name, svc.Failure = service, &policy
			c := dial(t, svc)
			waitCalls(t, c, backends, nil)
			l := load.Start(2, func(ctx context.Context) error { return call(ctx, c) })
			defer l.Stop()

			broken := time.Now()
			setChecks(api.HealthCritical)
			w := resolvertest.WaitWatch(t, consul.Scheme, service, func(w discovery.WatchInfo) bool { return w.Err != nil })
			t.Logf("failure seen after %v: %v", time.Since(broken), w.Err)
			switch policy.Mode {
			case discovery.KeepLastGood:
				for range 100 {
					if err := call(ctxT(t), c); err != nil {
						t.Fatalf("call with keep-last-good: %v", err)
					}
				}
				if n := l.Failed(); n != 0 {
					t.Errorf("%d calls failed with keep-last-good while the backends were up", n)
				}
			case discovery.FailFast:
				for {
					err := call(ctxT(t), c)
					if status.Code(err) == codes.Unavailable {
						t.Logf("UNAVAILABLE %v after the checks went critical", time.Since(broken))
						break
					}
					if time.Since(broken) > timeout {
						t.Fatalf("calls still end with %v, want UNAVAILABLE", err)
					}
				}
			case discovery.StaticFallback:
				waitCalls(t, c, []*backend{fallback}, backends)
				t.Logf("fallback called %v after the checks went critical", time.Since(broken))
			}
			l.Stop()
			recovered := time.Now()
			setChecks(api.HealthPassing)
			for n := backends[0].calls.Load(); backends[0].calls.Load() < n+5; {
				call(ctxT(t), c)
				if time.Since(recovered) > timeout {
					t.Fatal("no recovery")
				}
			}
			waitCalls(t, c, backends, []*backend{fallback})
			t.Logf("recovered %v after the checks passed again", time.Since(recovered))
		})
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return ctx
}

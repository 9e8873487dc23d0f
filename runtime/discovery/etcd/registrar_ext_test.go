package etcd_test

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/resolver"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/cctest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/etcd"
)

// TestDeregisterKeepsANewerInstancesKey: two instances with the same ID
// (blue/green): the new one took the key over, and the old one's
// Deregister leaves it alone.
func TestDeregisterKeepsANewerInstancesKey(t *testing.T) {
	clearSecurityEnv(t)
	s := startEtcd(t)
	c := rawClient(t, s.Endpoint())
	blue := newRegistrar(t, etcd.Config{}, s.Endpoint(), "greeter", "g1", "10.0.0.1:1")
	green := newRegistrar(t, etcd.Config{}, s.Endpoint(), "greeter", "g1", "10.0.0.2:1")
	if err := blue.Register(ctxT(t)); err != nil {
		t.Fatalf("blue: Register() = %v", err)
	}
	if err := green.Register(ctxT(t)); err != nil {
		t.Fatalf("green: Register() = %v", err)
	}
	if err := blue.Deregister(ctxT(t)); err != nil {
		t.Fatalf("blue: Deregister() = %v", err)
	}
	if got := getValue(t, c, "/services/greeter/g1"); !strings.Contains(got, "10.0.0.2:1") {
		t.Fatalf("value after the old instance's Deregister = %q, want the new instance's", got)
	}
	if err := green.Deregister(ctxT(t)); err != nil {
		t.Fatalf("green: Deregister() = %v", err)
	}
	if got := getValue(t, c, "/services/greeter/g1"); got != "" {
		t.Fatalf("value after the new instance's Deregister = %q, want none", got)
	}
}

// TestRegisterAfterDeregister: a deregistered Registrar refuses to start
// again and writes nothing, whether it was registered before or not;
// Deregister is idempotent.
func TestRegisterAfterDeregister(t *testing.T) {
	clearSecurityEnv(t)
	s := startEtcd(t)
	c := rawClient(t, s.Endpoint())
	for _, registerFirst := range []bool{false, true} {
		reg := newRegistrar(t, etcd.Config{}, s.Endpoint(), "greeter", "late", "10.0.0.1:1")
		if registerFirst {
			if err := reg.Register(ctxT(t)); err != nil {
				t.Fatalf("Register() = %v", err)
			}
		}
		if err := reg.Deregister(ctxT(t)); err != nil {
			t.Fatalf("Deregister() = %v", err)
		}
		if err := reg.Register(ctxT(t)); !errors.Is(err, etcd.ErrDeregistered) {
			t.Errorf("Register() after Deregister = %v, want ErrDeregistered", err)
		}
		if got := getValue(t, c, reg.Key()); got != "" {
			t.Errorf("value after Register after Deregister = %q, want none", got)
		}
		if err := reg.Deregister(ctxT(t)); err != nil {
			t.Errorf("second Deregister() = %v, want nil", err)
		}
		if err := reg.Status(); !errors.Is(err, etcd.ErrDeregistered) {
			t.Errorf("Status() = %v, want ErrDeregistered", err)
		}
	}
	resp, err := c.Get(ctxT(t), "/services/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || resp.Count != 0 {
		t.Errorf("keys left = %v, %v; want none", resp, err)
	}
}

// TestPrefixes: a registrar writes only keys that a target reaches; a
// prefix a target refuses is refused by NewRegistrar with the same check.
func TestPrefixes(t *testing.T) {
	clearSecurityEnv(t)
	inst := discovery.Instance{Service: "greeter", ID: "g1", Address: "10.0.0.1:1"}
	for _, tc := range []struct {
		prefix string
		want   string // the key, or a part of the error
		bad    bool
	}{
		{"", "/services/greeter/g1", false},
		{"/", "/greeter/g1", false},
		{"/lb/", "/lb/greeter/g1", false},
		{"/lb/services", "/lb/services/greeter/g1", false},
		{"services", `"services/greeter" does not start with '/'`, true},
		{"//", `"//greeter" has an empty segment`, true},
		{"/lb//services", `"/lb//services/greeter" has an empty segment`, true},
	} {
		cfg := etcd.Config{Prefix: tc.prefix}
		reg, rerr := cfg.NewRegistrar(inst, "")
		target, terr := cfg.Target(inst.Service, "")
		if tc.bad {
			for what, err := range map[string]error{"NewRegistrar": rerr, "Target": terr} {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("Config{Prefix: %q}.%s() = %v, want an error containing %s", tc.prefix, what, err, tc.want)
				}
			}
			continue
		}
		if rerr != nil || terr != nil {
			t.Errorf("Config{Prefix: %q}: NewRegistrar() = %v, Target() = %v", tc.prefix, rerr, terr)
			continue
		}
		if got := reg.(*etcd.Registrar).Key(); got != tc.want {
			t.Errorf("Config{Prefix: %q}: key %q, want %q", tc.prefix, got, tc.want)
		}
		// The target lists "<path>/": the key is under it.
		u, err := url.Parse(target)
		if err != nil || !strings.HasPrefix(tc.want, u.Path+"/") {
			t.Errorf("Config{Prefix: %q}: target %q (%v) does not reach key %q", tc.prefix, target, err, tc.want)
		}
	}

	for _, tc := range []struct{ target, want string }{
		{"etcd://127.0.0.1:2379//", `empty key prefix "/"`},
		{"etcd://127.0.0.1:2379/", `empty key prefix ""`},
		{"etcd://127.0.0.1:2379/services//", `"/services/" has an empty segment`},
		{"etcd://127.0.0.1:2379//services", `"//services" has an empty segment`},
	} {
		u, err := url.Parse(tc.target)
		if err != nil {
			t.Fatal(err)
		}
		_, err = etcd.NewBuilder().Build(resolver.Target{URL: *u}, cctest.New(), resolver.BuildOptions{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Build(%s) = %v, want an error containing %s", tc.target, err, tc.want)
		}
	}
}

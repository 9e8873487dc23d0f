package etcd

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/etcdserver"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/registrartest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
)

// clearEnv empties every variable the package reads for TLS and
// credentials, whatever the machine has set.
func clearEnv(t *testing.T) {
	for _, k := range []string{"ETCDCTL_CACERT", "ETCDCTL_CERT", "ETCDCTL_KEY", "ETCD_USERNAME", "ETCD_PASSWORD", "LB_ETCD_ALLOW_PLAINTEXT_AUTH"} {
		t.Setenv(k, "")
	}
}

func TestConfigTarget(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     map[string]string
		cfg     Config
		want    target
		wantErr string
	}{{
		name: "defaults",
		want: target{endpoints: []string{DefaultEndpoint}, prefix: "/services/svc"},
	}, {
		name: "http and bare endpoints",
		cfg:  Config{Endpoints: []string{"http://10.0.0.1:2379", "10.0.0.2:2379"}},
		want: target{endpoints: []string{"10.0.0.1:2379", "10.0.0.2:2379"}, prefix: "/services/svc"},
	}, {
		name: "https endpoints",
		cfg:  Config{Endpoints: []string{"https://10.0.0.1:2379", "HTTPS://[::1]:2379/"}},
		want: target{endpoints: []string{"10.0.0.1:2379", "[::1]:2379"}, prefix: "/services/svc", sec: security{tls: true}},
	}, {
		name: "files from the environment",
		env:  map[string]string{"ETCDCTL_CACERT": "/env/ca.pem", "ETCDCTL_CERT": "/env/c.pem", "ETCDCTL_KEY": "/env/k.pem"},
		want: target{endpoints: []string{DefaultEndpoint}, prefix: "/services/svc", sec: security{tls: true, caFile: "/env/ca.pem", certFile: "/env/c.pem", keyFile: "/env/k.pem"}},
	}, {
		name: "files from the Config override the environment",
		env:  map[string]string{"ETCDCTL_CACERT": "/env/ca.pem", "ETCDCTL_CERT": "/env/c.pem", "ETCDCTL_KEY": "/env/k.pem"},
		cfg:  Config{CACertFile: "/cfg/ca.pem", CertFile: "/cfg/c.pem", KeyFile: "/cfg/k.pem"},
		want: target{endpoints: []string{DefaultEndpoint}, prefix: "/services/svc", sec: security{tls: true, caFile: "/cfg/ca.pem", certFile: "/cfg/c.pem", keyFile: "/cfg/k.pem"}},
	}, {
		name: "a CA alone turns TLS on",
		cfg:  Config{CACertFile: "/cfg/ca.pem"},
		want: target{endpoints: []string{DefaultEndpoint}, prefix: "/services/svc", sec: security{tls: true, caFile: "/cfg/ca.pem"}},
	}, {
		name: "username over TLS",
		env:  map[string]string{"ETCD_USERNAME": "lb", "ETCD_PASSWORD": "pw-secret", "LB_ETCD_ALLOW_PLAINTEXT_AUTH": "true"},
		cfg:  Config{Endpoints: []string{"https://10.0.0.1:2379"}},
		// Allowing plaintext does not matter over TLS: the same client.
		want: target{endpoints: []string{"10.0.0.1:2379"}, prefix: "/services/svc", sec: security{tls: true, username: "lb"}},
	}, {
		name: "username over plaintext, allowed",
		env:  map[string]string{"ETCD_USERNAME": "lb", "ETCD_PASSWORD": "pw-secret"},
		cfg:  Config{AllowPlaintextAuth: true},
		want: target{endpoints: []string{DefaultEndpoint}, prefix: "/services/svc", sec: security{username: "lb", plaintextAuth: true}},
	}, {
		name:    "username over plaintext",
		env:     map[string]string{"ETCD_USERNAME": "lb", "ETCD_PASSWORD": "pw-secret"},
		wantErr: "LB_ETCD_ALLOW_PLAINTEXT_AUTH",
	}, {
		name:    "a certificate without its key",
		cfg:     Config{CertFile: "/cfg/c.pem"},
		wantErr: "both a certificate and a key",
	}, {
		name:    "a Config certificate with the environment's key",
		env:     map[string]string{"ETCDCTL_KEY": "/env/k.pem"},
		cfg:     Config{CertFile: "/cfg/c.pem"},
		wantErr: "both a certificate and a key",
	}, {
		name:    "http with TLS",
		cfg:     Config{Endpoints: []string{"http://10.0.0.1:2379"}, CACertFile: "/cfg/ca.pem"},
		wantErr: `"http://10.0.0.1:2379" is http:// but TLS is on`,
	}, {
		name:    "http and https",
		cfg:     Config{Endpoints: []string{"http://10.0.0.1:2379", "https://10.0.0.2:2379"}},
		wantErr: "mix http:// and https://",
	}, {
		name:    "another scheme",
		cfg:     Config{Endpoints: []string{"unix://10.0.0.1:2379"}},
		wantErr: `scheme "unix"`,
	}, {
		name:    "credentials in an endpoint",
		cfg:     Config{Endpoints: []string{"https://lb:pw-secret@10.0.0.1:2379"}},
		wantErr: "credentials are not allowed",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			got, err := tc.cfg.target("svc", "")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("%+v.target() = %v, want an error containing %q", tc.cfg, err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "pw-secret") {
					t.Errorf("error %q shows the password", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("%+v.target() = %v", tc.cfg, err)
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(target{}, security{})); diff != "" {
				t.Errorf("%+v.target() (-want +got):\n%s", tc.cfg, diff)
			}
			if s := fmt.Sprintf("%+v %#v", got, got); strings.Contains(s, "pw-secret") {
				t.Errorf("a printed target shows the password: %s", s)
			}
		})
	}
}

// TestTargetURL: the URL of Config.Target has the endpoints and prefix of
// the Config, and the environment's security, whatever the Config's: a URL
// carries none (lb.Dial hands the Config's to the resolver through Spec).
func TestTargetURL(t *testing.T) {
	env := map[string]string{"ETCDCTL_CACERT": "/env/ca.pem"}
	auth := map[string]string{"ETCD_USERNAME": "lb", "ETCD_PASSWORD": "pw-secret"}
	for _, tc := range []struct {
		name string
		env  map[string]string
		cfg  Config
	}{
		{"plain", nil, Config{Endpoints: []string{"10.0.0.1:2379", "http://10.0.0.2:2379"}, Prefix: "/lb/"}},
		{"https", nil, Config{Endpoints: []string{"https://10.0.0.1:2379", "https://10.0.0.2:2379"}}},
		{"IPv6", nil, Config{Endpoints: []string{"https://[::1]:2379"}}},
		{"a CA", nil, Config{CACertFile: "/cfg/ca.pem"}},
		{"https with the environment's CA", env, Config{Endpoints: []string{"https://10.0.0.1:2379"}}},
		{"another CA than the environment's", env, Config{CACertFile: "/cfg/ca.pem"}},
		// The URL alone would be refused (ErrPlaintextAuth) when it is
		// resolved; the Config is fine.
		{"credentials over a Config's TLS", auth, Config{Endpoints: []string{"https://10.0.0.1:2379"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			want, err := tc.cfg.target("svc", "")
			if err != nil {
				t.Fatal(err)
			}
			want.sec = securityFromEnv()
			s, err := tc.cfg.Target("svc", "")
			if err != nil {
				t.Fatalf("%+v.Target() = %v", tc.cfg, err)
			}
			u, err := url.Parse(s)
			if err != nil {
				t.Fatal(err)
			}
			got, err := parseURL(u)
			got.sec = securityFromEnv()
			if err != nil {
				t.Fatalf("parseURL(%s) = %v", s, err)
			}
			if diff := cmp.Diff(want, got, cmp.AllowUnexported(target{}, security{})); diff != "" {
				t.Errorf("%+v.Target() = %s (-Config +URL):\n%s", tc.cfg, s, diff)
			}
		})
	}
}

// TestTargetOfIPv6List: Go's URL parser, which gRPC parses targets with,
// refuses a host list with an IPv6 address: Target says so rather than
// return a target gRPC would not resolve with etcd.
func TestTargetOfIPv6List(t *testing.T) {
	clearEnv(t)
	cfg := Config{Endpoints: []string{"10.0.0.1:2379", "[::1]:2379"}}
	if s, err := cfg.Target("svc", ""); err == nil || !strings.Contains(err.Error(), "IPv6") {
		t.Errorf("%+v.Target() = %q, %v; want an error about IPv6", cfg, s, err)
	}
	if _, err := cfg.target("svc", ""); err != nil {
		t.Errorf("%+v.target() = %v: the Config itself is fine", cfg, err)
	}
}

// TestDeregisterIsNotAWarning: a deliberate Deregister is logged at Info,
// not as a warning.
func TestDeregisterIsNotAWarning(t *testing.T) {
	clearEnv(t)
	s, err := etcdserver.Start(t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reg, err := Config{}.NewRegistrar(discovery.Instance{Service: "greeter", ID: "a", Address: "10.0.0.1:1"}, s.Endpoint())
	if err != nil {
		t.Fatal(err)
	}
	registrartest.DeregisterIsNotAWarning(t, ctx, reg.(*Registrar), ErrDeregistered,
		"etcd: registered /services/greeter/a", "etcd: deregistered /services/greeter/a")
}

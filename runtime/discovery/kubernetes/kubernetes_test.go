package kubernetes

import (
	"net/url"
	"strings"
	"testing"
)

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct {
		target string
		want   target // namespace "" stays the default's to fill
		err    string
	}{
		{target: "kubernetes:///greeter", want: target{service: "greeter"}},
		{target: "kubernetes:///greeter:grpc", want: target{service: "greeter", port: "grpc"}},
		{target: "kubernetes:///greeter.prod:50051", want: target{service: "greeter", namespace: "prod", port: "50051"}},
		{target: "kubernetes:///greeter.prod.svc.cluster.local:grpc", want: target{service: "greeter", namespace: "prod", port: "grpc"}},
		{target: "kubernetes://prod/greeter:grpc", want: target{service: "greeter", namespace: "prod", port: "grpc"}},
		{target: "kubernetes:///greeter?kubeconfig=/k&context=c&server=https://10.0.0.1:6443",
			want: target{service: "greeter", kubeconfig: "/k", context: "c", server: "https://10.0.0.1:6443"}},
		{target: "kubernetes:///Greeter", err: "not a Kubernetes Service name"},
		{target: "kubernetes:///greeter.prod.example", err: "is not <service>.<namespace>"},
		{target: "kubernetes:///greeter:0", err: "not in 1-65535"},
		{target: "kubernetes:///greeter:grpc_port", err: "neither a number"},
		{target: "kubernetes:///greeter:", err: "empty port"},
		{target: "kubernetes://prod/greeter.other", err: "namespace is given twice"},
		{target: "kubernetes://u:secret@prod/greeter", err: "credentials are not allowed"},
		{target: "kubernetes:///greeter?token=x", err: "unknown parameter"},
		{target: "kubernetes:///greeter?server=http://h:1", err: "want https://"},
	} {
		u, err := url.Parse(tc.target)
		if err != nil {
			t.Fatal(err)
		}
		got, err := parseTarget(u)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseTarget(%q) = %v, want an error with %q", tc.target, err, tc.err)
			} else if strings.Contains(err.Error(), "secret") {
				t.Errorf("parseTarget(%q): the error %q shows the password", tc.target, err)
			}
		case err != nil:
			t.Errorf("parseTarget(%q): %v", tc.target, err)
		case got != tc.want:
			t.Errorf("parseTarget(%q) = %+v, want %+v", tc.target, got, tc.want)
		}
	}
}

// A Config's target parses back to the same settings.
func TestTargetRoundTrip(t *testing.T) {
	for _, c := range []Config{
		{Service: "greeter"},
		{Service: "greeter", Namespace: "prod", Port: "grpc"},
		{Namespace: "prod", Port: "50051", Kubeconfig: "/etc/kube config", Context: "ctx"},
	} {
		s, err := c.Target("from-registry", "")
		if err != nil {
			t.Fatal(err)
		}
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		got, err := parseTarget(u)
		if err != nil {
			t.Fatalf("parseTarget(%q): %v", s, err)
		}
		want, _ := c.target("from-registry", "")
		if got != want {
			t.Errorf("%+v: target %q reads back as %+v, want %+v", c, s, got, want)
		}
	}
}

// FuzzTarget: parseTarget never panics, a password in the target never
// shows in its error, and what it accepts makes a target that reads back
// the same.
func FuzzTarget(f *testing.F) {
	for _, s := range []string{"kubernetes:///greeter", "kubernetes:///greeter.prod:grpc", "kubernetes://prod/greeter:50051",
		"kubernetes:///greeter.prod.svc.cluster.local:grpc?kubeconfig=/k&context=c", "kubernetes://u:hunter2@prod/greeter", "kubernetes:///a:b:c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := url.Parse(s)
		if err != nil {
			return
		}
		rest := *u
		rest.User = nil
		got, err := parseTarget(u)
		if err != nil {
			if p, ok := u.User.Password(); ok && p != "" && strings.Contains(err.Error(), p) && !strings.Contains(rest.String(), p) {
				t.Fatalf("parseTarget(%q): the error %q shows the password", s, err)
			}
			return
		}
		back, err := url.Parse(got.url().String())
		if err != nil {
			t.Fatalf("target %q of %q does not parse: %v", got.url(), s, err)
		}
		again, err := parseTarget(back)
		if err != nil || again != got {
			t.Fatalf("parseTarget(%q) = %+v, its target %q reads back as %+v, %v", s, got, back, again, err)
		}
	})
}

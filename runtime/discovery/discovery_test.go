package discovery

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/resolver"
)

func TestParseAddress(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		wantErr  string
	}{
		{in: "10.0.0.1:80", want: "10.0.0.1:80"},
		{in: "host.local:65535", want: "host.local:65535"},
		{in: "[::1]:50051", want: "[::1]:50051"},
		{in: "[0:0::1]:50051", want: "[::1]:50051"},
		{in: "host", wantErr: "want host:port"},
		{in: ":80", wantErr: "empty host"},
		{in: "h:0", wantErr: `port "0"`},
		{in: "h:70000", wantErr: `port "70000"`},
		{in: "h:-1", wantErr: `port "-1"`},
		{in: "a b:1", wantErr: `host "a b"`},
		{in: "user@h:1", wantErr: `host "user@h"`},
	} {
		got, err := ParseAddress(tc.in)
		if tc.wantErr != "" {
			if !errors.Is(err, ErrBadAddress) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseAddress(%q) = %q, %v; want an ErrBadAddress containing %q", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseAddress(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestStateDeduplicatesAndSorts(t *testing.T) {
	md := Metadata{Weight: 3, Zone: "a"}
	s := State([]resolver.Endpoint{
		Endpoint("10.0.0.2:80", Metadata{}),
		Endpoint("10.0.0.1:80", md),
		Endpoint("10.0.0.2:80", Metadata{Weight: 9}), // duplicate: the first wins
	})
	var got []string
	for _, ep := range s.Endpoints {
		got = append(got, ep.Addresses[0].Addr)
	}
	if diff := cmp.Diff([]string{"10.0.0.1:80", "10.0.0.2:80"}, got); diff != "" {
		t.Errorf("State endpoints (-want +got):\n%s", diff)
	}
	if len(s.Addresses) != 2 || s.Addresses[0].Addr != "10.0.0.1:80" {
		t.Errorf("State Addresses = %v, want the endpoints' addresses", s.Addresses)
	}
	if m, ok := MetadataOf(s.Endpoints[0]); !ok || !m.Equal(md) {
		t.Errorf("MetadataOf(first) = %+v, %v; want %+v", m, ok, md)
	}
	if _, ok := MetadataOf(s.Endpoints[1]); ok {
		t.Error("MetadataOf(endpoint without metadata) reported metadata")
	}
}

func TestEqualStates(t *testing.T) {
	mk := func(w uint32, custom map[string]string, addrs ...string) resolver.State {
		var eps []resolver.Endpoint
		for _, a := range addrs {
			eps = append(eps, Endpoint(a, Metadata{Weight: w, Custom: custom}))
		}
		return State(eps)
	}
	a := mk(1, map[string]string{"k": "v"}, "10.0.0.1:1", "10.0.0.2:1")
	for _, tc := range []struct {
		name string
		b    resolver.State
		want bool
	}{
		{"same set, other order", mk(1, map[string]string{"k": "v"}, "10.0.0.2:1", "10.0.0.1:1"), true},
		{"other weight", mk(2, map[string]string{"k": "v"}, "10.0.0.1:1", "10.0.0.2:1"), false},
		{"other custom key", mk(1, map[string]string{"k": "w"}, "10.0.0.1:1", "10.0.0.2:1"), false},
		{"one less", mk(1, map[string]string{"k": "v"}, "10.0.0.1:1"), false},
	} {
		if got := EqualStates(a, tc.b); got != tc.want {
			t.Errorf("%s: EqualStates = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestRegistrationStatus(t *testing.T) {
	var s RegistrationStatus
	if !errors.Is(s.Status(), ErrNotRegistered) {
		t.Errorf("zero Status() = %v, want ErrNotRegistered", s.Status())
	}
	changed := s.StatusChanged()
	if !s.SetStatus(nil) || s.Status() != nil {
		t.Fatalf("SetStatus(nil) did not register: %v", s.Status())
	}
	select {
	case <-changed:
	default:
		t.Error("StatusChanged not closed by registering")
	}
	if s.SetStatus(nil) {
		t.Error("SetStatus(nil) twice reported a change")
	}
	changed = s.StatusChanged()
	down := errors.New("down")
	if !s.SetStatus(down) || !errors.Is(s.Status(), down) {
		t.Errorf("SetStatus(down) = %v", s.Status())
	}
	select {
	case <-changed:
	default:
		t.Error("StatusChanged not closed by losing the registration")
	}
	if s.SetStatus(errors.New("still down")) {
		t.Error("one error after another reported a change")
	}
}

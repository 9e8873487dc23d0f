package pool

import (
	"testing"

	"google.golang.org/grpc/resolver"

	_ "github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/leastrequest"
)

func TestParseConfig(t *testing.T) {
	cfg, err := ParseConfig([]byte(`{"size":4,"childPolicy":[{"not_registered":{}},{"lb_least_request":{"choiceCount":3}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Size != 4 || cfg.Child.Name != "lb_least_request" || cfg.Child.Config == nil {
		t.Errorf("ParseConfig = %+v, want size 4 over lb_least_request with its config", cfg)
	}
	for _, js := range []string{
		`{"size":0,"childPolicy":[{"round_robin":{}}]}`,
		`{"size":65,"childPolicy":[{"round_robin":{}}]}`,
		`{"size":2,"childPolicy":[{"nope":{}}]}`,
		`{"size":2,"childPolicy":[{"lb_least_request":{"choiceCount":1}}]}`,
		`{"size":2}`,
	} {
		if cfg, err := ParseConfig([]byte(js)); err == nil {
			t.Errorf("ParseConfig(%s) = %+v, want an error", js, cfg)
		}
	}
}

// TestMultiply: each endpoint comes size times, the copies told apart by
// their addresses and dialled at the real one.
func TestMultiply(t *testing.T) {
	eps := []resolver.Endpoint{{Addresses: []resolver.Address{{Addr: "10.0.0.1:1"}, {Addr: "[::1]:1"}}}, {Addresses: []resolver.Address{{Addr: "10.0.0.2:1"}}}}
	got := multiply(eps, 3)
	want := []string{"10.0.0.1:1", "10.0.0.1:1#1", "10.0.0.1:1#2", "10.0.0.2:1", "10.0.0.2:1#1", "10.0.0.2:1#2"}
	if len(got) != len(want) {
		t.Fatalf("%d endpoints, want %d", len(got), len(want))
	}
	for i, e := range got {
		if e.Addresses[0].Addr != want[i] {
			t.Errorf("endpoint %d: %s, want %s", i, e.Addresses[0].Addr, want[i])
		}
	}
	if got[1].Addresses[1].Addr != "[::1]:1#1" || eps[0].Addresses[1].Addr != "[::1]:1" {
		t.Errorf("second address of copy 1: %s (original now %s)", got[1].Addresses[1].Addr, eps[0].Addresses[1].Addr)
	}
}

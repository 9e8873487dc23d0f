package consul

import (
	"math"
	"net/url"
	"strconv"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/secrettest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
)

// FuzzInstance: a health entry from the agent never panics the resolver;
// an accepted one has an address ParseAddress accepts, and its weight is
// the Meta weight or Weights.Passing.
func FuzzInstance(f *testing.F) {
	f.Add("10.0.0.1", "", 50051, "3", 1, "zone", "z1")
	f.Add("", "10.0.0.9", 80, "", 5, "team", "x")
	f.Add("127.0.0.1:45489", "", 1, "x", 0, "", "")
	f.Add("::1", "", 65535, "4294967296", -2, "weight", "1")
	f.Add("10.0.0.2", "", 443, "", math.MaxInt, "", "") // Passing beyond 32 bits, where int has 64
	f.Fuzz(func(t *testing.T, host, node string, port int, weight string, passing int, key, val string) {
		e := &api.ServiceEntry{
			Node:    &api.Node{Node: "n1", Address: node},
			Service: &api.AgentService{ID: "i1", Address: host, Port: port, Meta: map[string]string{key: val}, Weights: api.AgentWeights{Passing: passing}},
		}
		if weight != "" {
			e.Service.Meta["weight"] = weight
		}
		s := &source{t: target{service: "svc"}, badWeight: map[string]string{}, warn: discovery.NewLogLimiter(logger)}
		inst, err := s.instance(e, map[string]string{})
		if err != nil {
			return
		}
		if again, err := discovery.ParseAddress(inst.Address); err != nil || again != inst.Address {
			t.Fatalf("instance(%+v) = address %q, which ParseAddress gives as %q, %v", e.Service, inst.Address, again, err)
		}
		var want uint32 // the Meta weight if it is one, else Weights.Passing
		if n, err := strconv.ParseUint(e.Service.Meta["weight"], 10, 32); err == nil {
			want = uint32(n)
		}
		if want == 0 && passing > 0 {
			want = uint32(min(uint64(passing), math.MaxUint32))
		}
		if inst.Metadata.Weight != want {
			t.Fatalf("instance(%+v) weighs %d, want %d", e.Service, inst.Metadata.Weight, want)
		}
	})
}

// FuzzTarget: a consul target never panics the parser, and a token given
// in it never appears in the error.
func FuzzTarget(f *testing.F) {
	secrettest.FuzzTarget(f, []string{
		"consul://127.0.0.1:8500/helloworld?tag=v2&dc=dc1",
		"consul:///greeter?near=_agent&consistent=true",
		"consul://h:1/a%2Fb", "consul://[::1]:8500/", "consul://u:s3cr3t-tk@h:1/x",
	}, func(u *url.URL) error {
		_, err := newBuilder().parse(u)
		return err
	})
}

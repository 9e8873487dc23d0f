package describe_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/balancer"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/describe"
)

// TestRegister: the newest describer of a channel describes it, until it
// unregisters; then the one before it does, then none.
func TestRegister(t *testing.T) {
	const id = -7 // no channel of grpc-go has it
	older := describe.Register(id, "policy", func() map[string]string { return map[string]string{"a:1": "old"} })
	newer := describe.Register(id, "policy", func() map[string]string { return map[string]string{"a:1": "new"} })
	for _, step := range []struct {
		name string
		want map[string]string
		next func()
	}{
		{"both", map[string]string{"a:1": "new"}, newer},
		{"older", map[string]string{"a:1": "old"}, older},
		{"none", nil, func() {}},
	} {
		if diff := cmp.Diff(step.want, describe.Channel(id)); diff != "" {
			t.Errorf("%s: Channel(%d) mismatch (-want +got):\n%s", step.name, id, diff)
		}
		step.next()
		step.next() // unregistering twice is harmless
	}
}

// TestLayers: each layer's newest describer speaks for it; their texts
// join in the order the layers first registered, and an empty text says
// nothing.
func TestLayers(t *testing.T) {
	const id = -8
	outer := describe.Register(id, "lb_outlier", func() map[string]string {
		return map[string]string{"a:1": "ejected until 12:00:03", "b:1": ""}
	})
	defer outer()
	policy := describe.Register(id, "lb_p2c_ewma", func() map[string]string {
		return map[string]string{"a:1": "latency 1ms", "b:1": "latency 2ms"}
	})
	defer policy()
	want := map[string]string{"a:1": "ejected until 12:00:03, latency 1ms", "b:1": "latency 2ms"}
	if diff := cmp.Diff(want, describe.Channel(id)); diff != "" {
		t.Errorf("Channel(%d) mismatch (-want +got):\n%s", id, diff)
	}
}

func TestChannelIDWithoutChannelz(t *testing.T) {
	if id, ok := describe.ChannelID(balancer.BuildOptions{}); ok {
		t.Errorf("ChannelID(BuildOptions{}) = %d, true; want false", id)
	}
}

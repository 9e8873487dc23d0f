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
	older := describe.Register(id, func() map[string]string { return map[string]string{"a:1": "old"} })
	newer := describe.Register(id, func() map[string]string { return map[string]string{"a:1": "new"} })
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

func TestChannelIDWithoutChannelz(t *testing.T) {
	if id, ok := describe.ChannelID(balancer.BuildOptions{}); ok {
		t.Errorf("ChannelID(BuildOptions{}) = %d, true; want false", id)
	}
}

package subset

import (
	"fmt"
	"slices"
	"testing"

	"google.golang.org/grpc/resolver"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
)

func addrs(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("10.0.%d.%d:50051", i/250, i%250)
	}
	return out
}

// TestRendezvousChurn: 300 clients of 300 instances, subsets of 10. An
// instance removed changes exactly the subsets that held it, each by one
// instance; one added changes only the subsets it enters, each by one.
func TestRendezvousChurn(t *testing.T) {
	all := addrs(301)
	before, added := all[:300], all[300]
	removed := before[17]
	without := slices.Delete(slices.Clone(before), 17, 18)
	var held, entered int
	for c := range 300 {
		seed := uint64(c + 1)
		old := Rendezvous(seed, before, 10)
		after := Rendezvous(seed, without, 10)
		if slices.Contains(old, removed) {
			held++
			if d := diff(old, after); d != 1 {
				t.Errorf("client %d held the removed instance: %d of its instances changed, want 1", c, d)
			}
		} else if !slices.Equal(old, after) {
			t.Errorf("client %d did not hold the removed instance, yet its subset changed: %v to %v", c, old, after)
		}
		grown := Rendezvous(seed, all, 10)
		if slices.Contains(grown, added) {
			entered++
			if d := diff(old, grown); d != 1 {
				t.Errorf("client %d took the new instance: %d changed, want 1", c, d)
			}
		} else if !slices.Equal(old, grown) {
			t.Errorf("client %d did not take the new instance, yet its subset changed", c)
		}
	}
	t.Logf("the removed instance was in %d subsets, the added one entered %d (10 expected)", held, entered)
	if held == 0 || entered == 0 {
		t.Error("no subset held the removed instance or took the added one: the test checked nothing")
	}
}

// diff counts the members of a not in b.
func diff(a, b []string) int {
	n := 0
	for _, x := range a {
		if !slices.Contains(b, x) {
			n++
		}
	}
	return n
}

// TestDeterministicBalance: 50 clients (indices 0-49) of 20 instances,
// subsets of 5: every instance has 12 or 13 clients; and 300 × 300 by 10:
// every instance exactly 10.
func TestDeterministicBalance(t *testing.T) {
	for _, tc := range []struct{ clients, instances, size, lo, hi int }{
		{50, 20, 5, 12, 13},
		{300, 300, 10, 10, 10},
	} {
		inst := addrs(tc.instances)
		count := map[string]int{}
		for i := range tc.clients {
			sub := Deterministic(i, inst, tc.size)
			if len(sub) != tc.size {
				t.Fatalf("client %d: subset of %d, want %d", i, len(sub), tc.size)
			}
			for _, a := range sub {
				count[a]++
			}
		}
		for _, a := range inst {
			if count[a] < tc.lo || count[a] > tc.hi {
				t.Errorf("%d clients × %d instances by %d: %s has %d clients, want %d-%d", tc.clients, tc.instances, tc.size, a, count[a], tc.lo, tc.hi)
			}
		}
	}
}

// TestChooseByLevel: with a zone, the subset is taken in each level.
func TestChooseByLevel(t *testing.T) {
	var eps []resolver.Endpoint
	for i, a := range addrs(30) {
		zone := string(rune('a' + i%3))
		region := "r"
		if zone == "c" {
			region = "s"
		}
		eps = append(eps, discovery.Endpoint(a, discovery.Metadata{Zone: zone, Region: region}))
	}
	got := Choose(Config{Size: 4, Zone: "a", Region: "r"}, 7, eps)
	zones := map[string]int{}
	for _, ep := range got {
		md, _ := discovery.MetadataOf(ep)
		zones[md.Zone]++
	}
	if zones["a"] != 4 || zones["b"] != 4 || zones["c"] != 4 {
		t.Errorf("subset by level: %v, want 4 of each zone (each its own level)", zones)
	}
	if got := Choose(Config{Size: 4}, 7, eps); len(got) != 4 {
		t.Errorf("without a zone: %d instances, want 4", len(got))
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []Config{{Size: 0}, {Size: MaxSize + 1}, {Size: 3, Count: 5, Index: 5}, {Size: 3, Count: -1}} {
		if err := c.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want an error", c)
		}
	}
}

package bench

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"testing"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/resolver"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/hashspread"
)

// hashPolicies are the consistent hashing policies BenchmarkHashing
// compares.
var hashPolicies = []policy{
	policies[slices.IndexFunc(policies, func(p policy) bool { return p.name == "ring_hash_experimental" })],
	policies[slices.IndexFunc(policies, func(p policy) bool { return p.name == "lb_consistent_hash" })],
}

// plainEndpoints is endpoints(n) without weights: ring_hash weighs its
// ring by them, and the comparison is of equal endpoints.
func plainEndpoints(n int) []resolver.Endpoint {
	eps := endpoints(n)
	for i := range eps {
		eps[i] = resolver.Endpoint{Addresses: eps[i].Addresses}
	}
	return eps
}

// assign picks for each of keys keys through b and returns the address
// each key went to.
func assign(tb testing.TB, p policy, b *built, keys int) []string {
	tb.Helper()
	picker := b.cc.latestPicker()
	out := make([]string, keys)
	for k := range keys {
		info := balancer.PickInfo{FullMethodName: "/grpc.testing.TestService/UnaryCall", Ctx: p.withKey(context.Background(), "key-"+strconv.Itoa(k))}
		res, err := picker.Pick(info)
		if err != nil {
			tb.Fatalf("%s: Pick: %v", p.label, err)
		}
		out[k] = res.SubConn.(*fakeSubConn).addr
		if res.Done != nil {
			res.Done(sent)
		}
	}
	return out
}

// BenchmarkHashing measures, over 1,000,000 keys at 3, 10 and 100
// endpoints, each policy's busiest endpoint's load over the mean
// (max/mean), and the keys that move when one endpoint is added
// (moved-add/min) or the middle one removed (moved-remove/min), as
// multiples of the least that must move (1/(n+1), 1/n). Not a timing: run
// it with -benchtime 1x.
func BenchmarkHashing(b *testing.B) {
	const keys = 1_000_000
	for _, n := range []int{3, 10, 100} {
		for _, p := range hashPolicies {
			b.Run(fmt.Sprintf("policy=%s/endpoints=%d", p.label, n), func(b *testing.B) {
				var maxMean, added, removed float64
				for b.Loop() {
					all := plainEndpoints(n + 1)
					without := append(slices.Clone(all[:n/2]), all[n/2+1:n]...)
					maxMean, added, removed = hashspread.Figures(n,
						assign(b, p, buildReadyOn(b, p, all[:n]), keys),
						assign(b, p, buildReadyOn(b, p, all), keys),
						assign(b, p, buildReadyOn(b, p, without), keys),
						all[n/2].Addresses[0].Addr)
				}
				b.ReportMetric(maxMean, "max/mean")
				b.ReportMetric(added, "moved-add/min")
				b.ReportMetric(removed, "moved-remove/min")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}

package bench

import (
	"flag"
	"fmt"
	"hash/fnv"
	"math/rand"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/go-kratos/aegis/subset"
	"github.com/go-kratos/kratos/v2/registry"
	"github.com/google/uuid"
	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/randomsubsetting"
	"google.golang.org/grpc/resolver"

	lbsubset "github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/subset"
)

var subsetOut = flag.String("subset.out", "", "BenchmarkSubset: file to write each policy's connections per instance to, CSV, a column per policy, the instances from the most connected down (none: not written)")

const (
	subsetClients   = 300
	subsetInstances = 300
	subsetSize      = 10
	subsetRemoved   = 0 // the index of the instance that leaves
)

// subsetter is one way of taking subsets: newClient returns client c's,
// a function from the instances the client is offered, in every update
// of its resolver, to those it connects to. A client keeps its state
// (its seed, its balancer) from one update to the next.
type subsetter struct {
	label     string
	newClient func(tb testing.TB, c int) func(addrs []string) []string
}

var subsetters = []subsetter{
	// Ours, as lb_subset takes them: rendezvous with a seed per client
	// (drawn at random when its channel starts; 1..300 here), and
	// deterministic subsetting with the client's index (0..299).
	{label: "lb_subset_rendezvous", newClient: func(_ testing.TB, c int) func([]string) []string {
		return func(addrs []string) []string { return lbsubset.Rendezvous(uint64(c+1), addrs, subsetSize) }
	}},
	{label: "lb_subset_deterministic", newClient: func(_ testing.TB, c int) func([]string) []string {
		return func(addrs []string) []string { return lbsubset.Deterministic(c, addrs, subsetSize) }
	}},
	// grpc-go's gRFC A68 policy itself, over a child that records the
	// endpoints it is given. Its seed is drawn at random when it is built
	// and cannot be set: its numbers vary from run to run.
	{label: "random_subsetting_experimental", newClient: grpcSubsetClient},
	// go-zero's zrpc resolvers (discov, direct, kube) call
	// zrpc/resolver/internal.subset on every update: shuffle every
	// instance with math/rand, keep the first subsetSize (32 there, not
	// settable). The function is internal: these are its two statements,
	// over a source seeded per client so that the table is reproducible
	// (go-zero's is math/rand's global one).
	{label: "gozero_subset", newClient: func(_ testing.TB, c int) func([]string) []string {
		r := rand.New(rand.NewSource(int64(c + 1)))
		return func(addrs []string) []string {
			set := slices.Clone(addrs)
			r.Shuffle(len(set), func(i, j int) { set[i], set[j] = set[j], set[i] })
			return set[:min(subsetSize, len(set))]
		}
	}},
	// kratos's gRPC discovery resolver (transport/grpc/resolver/discovery,
	// WithSubset, 25 by default) calls aegis's subset.Subset on every
	// update, with a key drawn once per resolver (uuid.New; from a seeded
	// reader here): a consistent-hash ring of the instances (160 points
	// each, FNV-1a) read from the key's point on. subset.Subset builds
	// its ring anew on every call, re-sorting it for each instance it
	// adds: about a second for 300 instances. kratosSubset builds the
	// same ring once for every client, and checks client 0's subsets
	// against subset.Subset's.
	{label: "kratos_subset", newClient: kratosSubset},
}

func kratosSubset(tb testing.TB, c int) func([]string) []string {
	key := uuid.Must(uuid.NewRandomFromReader(rand.New(rand.NewSource(int64(c + 1))))).String()
	return func(addrs []string) []string {
		ring, ok := kratosRings[strings.Join(addrs, ",")]
		if !ok {
			ring = newKratosRing(addrs)
			kratosRings[strings.Join(addrs, ",")] = ring
		}
		got := ring.getN(key, subsetSize)
		if c == 0 {
			ins := make([]*registry.ServiceInstance, len(addrs))
			for i, a := range addrs {
				ins[i] = &registry.ServiceInstance{ID: a, Name: "bench", Endpoints: []string{"grpc://" + a}}
			}
			var want []string
			for _, in := range subset.Subset(key, ins, subsetSize) {
				want = append(want, in.ID)
			}
			if !slices.Equal(got, want) {
				tb.Fatalf("kratosRing.getN(%q) = %v, subset.Subset = %v", key, got, want)
			}
		}
		return got
	}
}

// kratosRings are the rings of the instance lists seen, by the list.
var kratosRings = map[string]*kratosRing{}

// kratosRing is aegis's internal/consistent ring as subset.Subset sets it
// up: 160 points an instance, each at the FNV-1a hash of the point's
// index and the instance's String() ("bench-" + the address here), a
// later instance taking a point two share.
type kratosRing struct {
	hashes []uint32 // sorted
	owner  map[uint32]string
}

func newKratosRing(addrs []string) *kratosRing {
	r := &kratosRing{owner: map[uint32]string{}}
	for _, a := range addrs {
		for i := range 160 {
			r.owner[fnv32a(strconv.Itoa(i)+"bench-"+a)] = a
		}
	}
	for h := range r.owner {
		r.hashes = append(r.hashes, h)
	}
	slices.Sort(r.hashes)
	return r
}

// getN is consistent.GetN: the owners of the points from the first after
// the key's hash on, each once, until there are n.
func (r *kratosRing) getN(key string, n int) []string {
	k := fnv32a(key)
	start, _ := slices.BinarySearch(r.hashes, k+1) // the first above k
	if start == len(r.hashes) {
		start = 0
	}
	out := []string{r.owner[r.hashes[start]]}
	for i := start + 1; i != start && len(out) < n; i++ {
		if i >= len(r.hashes) {
			i = 0
		}
		if a := r.owner[r.hashes[i]]; !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

func fnv32a(s string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(s))
	return h.Sum32()
}

// subsetColumns is each policy's connections per instance, most first, in
// the order the policies ran: what -subset.out writes.
var subsetColumns []column

// BenchmarkSubset is subsetting without sockets: 300 clients each take a
// subset of 10 of 300 instances, then one instance leaves, then a new one
// joins. One run per policy, whatever b.N (use -benchtime 1x). Reported:
// max/mean and min/mean, the most and least connections an instance gets
// over the mean (10); for each change, moved (connections closed, each
// replaced by one opened: the subsets' churn) and needed (what the change
// requires: for the one that leaves, a connection for each client that
// held it; for the one that joins, one for each client that now takes it,
// so that it gets a share of the calls).
func BenchmarkSubset(b *testing.B) {
	var before, left, joined []string
	for i := range subsetInstances {
		before = append(before, fmt.Sprintf("10.1.%d.%d:50051", i/250, i%250+1))
	}
	removed, added := before[subsetRemoved], "10.2.0.1:50051"
	left = slices.Delete(slices.Clone(before), subsetRemoved, subsetRemoved+1)
	joined = append(slices.Clone(left), added)

	for _, s := range subsetters {
		b.Run("policy="+s.label, func(b *testing.B) {
			conns := map[string]int{}
			var rmMoved, rmNeeded, addMoved, addNeeded int
			for c := range subsetClients {
				take := s.newClient(b, c)
				s0, s1, s2 := take(before), take(left), take(joined)
				for _, sub := range [][]string{s0, s1, s2} {
					if len(sub) != subsetSize {
						b.Fatalf("client %d: a subset of %d, want %d", c, len(sub), subsetSize)
					}
				}
				for _, a := range s0 {
					conns[a]++
				}
				rmMoved += len(s0) - common(s0, s1)
				if slices.Contains(s0, removed) {
					rmNeeded++
				}
				addMoved += len(s1) - common(s1, s2)
				if slices.Contains(s2, added) {
					addNeeded++
				}
			}
			counts := make([]int, 0, subsetInstances)
			for _, a := range before {
				counts = append(counts, conns[a])
			}
			slices.Sort(counts)
			slices.Reverse(counts)
			mean := float64(subsetClients*subsetSize) / subsetInstances
			b.ReportMetric(0, "ns/op") // one run whatever b.N: meaningless
			b.ReportMetric(float64(counts[0])/mean, "max/mean")
			b.ReportMetric(float64(counts[len(counts)-1])/mean, "min/mean")
			b.ReportMetric(float64(rmMoved), "remove-moved")
			b.ReportMetric(float64(rmNeeded), "remove-needed")
			b.ReportMetric(float64(addMoved), "add-moved")
			b.ReportMetric(float64(addNeeded), "add-needed")
			if *subsetOut != "" {
				subsetColumns = append(subsetColumns, column{s.label, counts})
				if err := writeColumns(*subsetOut, "rank", subsetColumns); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// common returns how many of a are in b.
func common(a, b []string) int {
	n := 0
	for _, x := range a {
		if slices.Contains(b, x) {
			n++
		}
	}
	return n
}

// grpcSubsetClient builds grpc-go's random_subsetting_experimental over a
// fake channel, with a child that records the endpoints it is given.
func grpcSubsetClient(tb testing.TB, _ int) func([]string) []string {
	bb := balancer.Get(randomsubsetting.Name)
	cfg, err := bb.(balancer.ConfigParser).ParseConfig([]byte(fmt.Sprintf(`{"subsetSize":%d,"childPolicy":[{%q:{}}]}`, subsetSize, recordName)))
	if err != nil {
		tb.Fatal(err)
	}
	bal := bb.Build(&fakeCC{updated: make(chan struct{}, 1)}, balancer.BuildOptions{})
	tb.Cleanup(bal.Close)
	return func(addrs []string) []string {
		var s resolver.State
		for _, a := range addrs {
			s.Endpoints = append(s.Endpoints, resolver.Endpoint{Addresses: []resolver.Address{{Addr: a}}})
		}
		recorded = nil
		if err := bal.UpdateClientConnState(balancer.ClientConnState{ResolverState: s, BalancerConfig: cfg}); err != nil {
			tb.Fatal(err)
		}
		var out []string
		for _, ep := range recorded {
			out = append(out, ep.Addresses[0].Addr)
		}
		return out
	}
}

// recordName is a child policy that keeps the endpoints of its last update
// in recorded, and does nothing else: the subset its parent gave it.
const recordName = "bench_record_endpoints"

var recorded []resolver.Endpoint

func init() { balancer.Register(recordBuilder{}) }

type recordBuilder struct{}

func (recordBuilder) Name() string { return recordName }
func (recordBuilder) Build(balancer.ClientConn, balancer.BuildOptions) balancer.Balancer {
	return recordBalancer{}
}

type recordBalancer struct{}

func (recordBalancer) UpdateClientConnState(s balancer.ClientConnState) error {
	recorded = s.ResolverState.Endpoints
	return nil
}
func (recordBalancer) ResolverError(error)                                        {}
func (recordBalancer) UpdateSubConnState(balancer.SubConn, balancer.SubConnState) {}
func (recordBalancer) Close()                                                     {}
func (recordBalancer) ExitIdle()                                                  {}

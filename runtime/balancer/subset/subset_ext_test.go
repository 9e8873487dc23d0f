package subset_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/resolvertest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/testbackend"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/subset"
)

func TestMain(m *testing.M) { resolvertest.VerifyTestMain(m) }

func state(addrs []string) resolver.State {
	var s resolver.State
	for _, a := range addrs {
		s.Endpoints = append(s.Endpoints, resolver.Endpoint{Addresses: []resolver.Address{{Addr: a}}})
	}
	return s
}

// TestConnections: 50 clients of 20 servers, subsets of 5 by rendezvous
// (each client's seed fixed): each server accepts the connections of the
// clients whose subset holds it, and no other, so each client holds 5.
// Removing one server from every client's list opens exactly one new
// connection for each client that held it, to the instance that replaces
// it in its subset, and none elsewhere.
func TestConnections(t *testing.T) {
	const clients, size = 50, 5
	bs, addrs := testbackend.StartN(t, 20)
	index := map[string]int{}
	for i, a := range addrs {
		index[a] = i
	}
	var rs []*manual.Resolver
	want := make([]int64, len(bs))
	for c := range clients {
		seed := uint64(c + 1)
		for _, a := range subset.Rendezvous(seed, addrs, size) {
			want[index[a]]++
		}
		r := manual.NewBuilderWithScheme(fmt.Sprintf("subset%d", c))
		r.InitialState(state(addrs))
		cc, err := grpc.NewClient(r.Scheme()+":///fleet", grpc.WithResolvers(r), grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultServiceConfig(fmt.Sprintf(`{"loadBalancingConfig":[{"lb_subset":{"size":%d,"seed":%d,"childPolicy":[{"round_robin":{}}]}}]}`, size, seed)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		cc.Connect()
		rs = append(rs, r)
	}
	conns := func() []int64 {
		out := make([]int64, len(bs))
		for i, b := range bs {
			out[i] = b.Conns.Load()
		}
		return out
	}
	waitTotal := func(total int64) []int64 {
		t.Helper()
		deadline := time.Now().Add(resolvertest.Timeout)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			got := conns()
			var sum int64
			for _, n := range got {
				sum += n
			}
			if sum == total {
				return got
			}
			if sum > total || time.Now().After(deadline) {
				t.Fatalf("servers accepted %d connections (%v), want %d", sum, got, total)
			}
			<-tick.C
		}
	}
	got := waitTotal(clients * size)
	if !slices.Equal(got, want) {
		t.Errorf("connections per server %v, want the subsets' %v", got, want)
	}
	t.Logf("connections per server, 50 clients by 5: %v", got)

	// Server 7 leaves every client's list.
	const gone = 7
	without := slices.Delete(slices.Clone(addrs), gone, gone+1)
	more := make([]int64, len(bs))
	held := int64(0)
	for c := range clients {
		seed := uint64(c + 1)
		old := subset.Rendezvous(seed, addrs, size)
		if !slices.Contains(old, addrs[gone]) {
			continue
		}
		held++
		for _, a := range subset.Rendezvous(seed, without, size) {
			if !slices.Contains(old, a) {
				more[index[a]]++
			}
		}
	}
	for _, r := range rs {
		r.UpdateState(state(without))
	}
	after := waitTotal(clients*size + held)
	for i := range after {
		if after[i]-got[i] != more[i] {
			t.Errorf("server %d accepted %d new connections, want %d (the subsets it entered)", i, after[i]-got[i], more[i])
		}
	}
	t.Logf("%d clients held the removed server; new connections %v", held, more)
}

// TestDeterministicConnections: 50 clients with indices 0-49 of 20
// servers, subsets of 5: every server accepts 12 or 13 connections.
func TestDeterministicConnections(t *testing.T) {
	const clients, size = 50, 5
	bs, addrs := testbackend.StartN(t, 20)
	for c := range clients {
		r := manual.NewBuilderWithScheme(fmt.Sprintf("det%d", c))
		r.InitialState(state(addrs))
		cc, err := grpc.NewClient(r.Scheme()+":///fleet", grpc.WithResolvers(r), grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultServiceConfig(fmt.Sprintf(`{"loadBalancingConfig":[{"lb_subset":{"size":%d,"index":%d,"count":%d,"childPolicy":[{"round_robin":{}}]}}]}`, size, c, clients)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		cc.Connect()
	}
	deadline := time.Now().Add(resolvertest.Timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		var sum int64
		got := make([]int64, len(bs))
		for i, b := range bs {
			got[i] = b.Conns.Load()
			sum += got[i]
		}
		if sum == clients*size {
			for i, n := range got {
				if n < 12 || n > 13 {
					t.Errorf("server %d accepted %d connections, want 12 or 13 (%v)", i, n, got)
				}
			}
			t.Logf("connections per server: %v", got)
			return
		}
		if sum > clients*size || time.Now().After(deadline) {
			t.Fatalf("servers accepted %d connections (%v), want %d", sum, got, clients*size)
		}
		<-tick.C
	}
}

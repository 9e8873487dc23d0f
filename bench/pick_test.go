package bench

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var endpointCounts = []int{3, 10, 100}

// BenchmarkPick is the cost of one pick, alone (op=pick) and with its Done
// (op=pick_done), from one goroutine (mode=serial) and from GOMAXPROCS
// goroutines at once (mode=parallel), of every policy over 3, 10 and 100
// READY endpoints. Each balancer is built alone over a fake channel
// (buildReady), so only its picker is measured. The endpoints are spread
// over zones a, b and c; the lb_locality>... entries are a client in zone
// a, whose picks go to zone a's (1 of 3, 4 of 10, 34 of 100).
func BenchmarkPick(b *testing.B) {
	for _, p := range policies {
		for _, n := range endpointCounts {
			for _, done := range []bool{false, true} {
				op := "pick"
				if done {
					op = "pick_done"
				}
				b.Run(fmt.Sprintf("policy=%s/endpoints=%d/op=%s/mode=serial", p.label, n, op), func(b *testing.B) {
					picker, infos := buildReady(b, p, n).cc.latestPicker(), pickInfos(p)
					b.ReportAllocs()
					for i := 0; b.Loop(); i++ {
						if err := pick(picker, infos[i&(len(infos)-1)], done); err != nil {
							b.Fatal(err)
						}
					}
				})
				b.Run(fmt.Sprintf("policy=%s/endpoints=%d/op=%s/mode=parallel", p.label, n, op), func(b *testing.B) {
					picker, infos := buildReady(b, p, n).cc.latestPicker(), pickInfos(p)
					b.ReportAllocs()
					b.ResetTimer()
					b.RunParallel(func(pb *testing.PB) {
						for i := 0; pb.Next(); i++ {
							if err := pick(picker, infos[i&(len(infos)-1)], done); err != nil {
								b.Error(err)
								return
							}
						}
					})
				})
			}
		}
	}
}

// pick is one call's pick and, with done, its Done.
// sent is what grpc-go tells Done of a call that went out and came back.
var sent = balancer.DoneInfo{BytesSent: true, BytesReceived: true}

func pick(p balancer.Picker, info balancer.PickInfo, done bool) error {
	res, err := p.Pick(info)
	if err != nil {
		return err
	}
	if done && res.Done != nil {
		res.Done(sent)
	}
	return nil
}

// TestPickersSpread checks that the benchmarks measure real picks: every
// policy reaches every endpoint (pick_first: exactly one; lb_locality>...:
// every one of zone a, and no other) with picks of the fake channel's own
// subchannels. Calls done at once all take about as
// long, so latency-aware policies (the p2c ones) may shun an endpoint whose
// one sample a preemption made long, until they force a pick of it (go-zero's
// after 1 s, kratos's and ours after 3 s): picking goes on for up to 5 s.
func TestPickersSpread(t *testing.T) {
	for _, p := range policies {
		for _, n := range endpointCounts {
			t.Run(fmt.Sprintf("policy=%s/endpoints=%d", p.label, n), func(t *testing.T) {
				bt := buildReady(t, p, n)
				picker, infos := bt.cc.latestPicker(), pickInfos(p)
				local := map[string]bool{}
				for i, ep := range endpoints(n) {
					local[ep.Addresses[0].Addr] = zoneOf(i) == clientZone
				}
				want := n
				switch {
				case p.single:
					want = 1
				case p.local:
					want = localCount(n)
				}
				hits := map[string]int{}
				deadline := time.Now().Add(5 * time.Second)
				i := 0
				for ; i < 100*n || (len(hits) < want && time.Now().Before(deadline)); i++ {
					res, err := picker.Pick(infos[i%len(infos)])
					if err != nil {
						t.Fatalf("Pick #%d: %v", i, err)
					}
					sc, ok := res.SubConn.(*fakeSubConn)
					if !ok {
						t.Fatalf("Pick #%d = SubConn %T, want one of the fake channel's", i, res.SubConn)
					}
					hits[sc.addr]++
					if p.local && !local[sc.addr] {
						t.Fatalf("Pick #%d = %s, outside zone %s", i, sc.addr, clientZone)
					}
					if res.Done != nil {
						res.Done(sent)
					}
				}
				if len(hits) != want {
					t.Errorf("%d picks reached %d endpoints, want %d: %v", i, len(hits), want, hits)
				}
				if i > 100*n {
					t.Logf("%d picks to reach all %d endpoints", i, n)
				}
			})
		}
	}
}

// TestOutlierPickersEject checks that the lb_outlier>... entries measure
// lb_outlier's own picker over the fake channel, not the child's alone:
// calls fail until one endpoint has failed five in a row (the default),
// which ejects it, and the picker the channel then gets never picks it.
// Every endpoint fails, not one: the p2c child shuns an endpoint once it
// has failed, and would not pick it five times in a row for seconds.
func TestOutlierPickersEject(t *testing.T) {
	const n = 10
	failed := balancer.DoneInfo{Err: status.Error(codes.Unavailable, "bench: failing"), BytesSent: true, BytesReceived: true}
	for _, p := range policies {
		if p.name != "lb_outlier" {
			continue
		}
		t.Run("policy="+p.label, func(t *testing.T) {
			bt := buildReady(t, p, n)
			picker, infos := bt.cc.latestPicker(), pickInfos(p)
			streaks := map[string]int{}
			bad := ""
			for i := 0; bad == ""; i++ {
				if i == 100*n {
					t.Fatalf("%d failed calls, none 5 in a row on one endpoint: %v", i, streaks)
				}
				res, err := picker.Pick(infos[i%len(infos)])
				if err != nil {
					t.Fatalf("Pick #%d: %v", i, err)
				}
				addr := res.SubConn.(*fakeSubConn).addr
				if streaks[addr]++; streaks[addr] == 5 {
					bad = addr
				}
				if res.Done != nil {
					res.Done(failed)
				}
			}
			// The ejection reaches the child, then the channel, from
			// lb_outlier's goroutine.
			deadline := time.After(5 * time.Second)
			for bt.cc.latestPicker() == picker {
				select {
				case <-bt.cc.updated:
				case <-deadline:
					t.Fatalf("no new picker 5s after %s failed 5 calls in a row", bad)
				}
			}
			picker = bt.cc.latestPicker()
			if typ := fmt.Sprintf("%T", picker); !strings.Contains(typ, "outlier") {
				t.Errorf("the channel's picker is a %s, want lb_outlier's", typ)
			}
			for i := range 100 * n {
				res, err := picker.Pick(infos[i%len(infos)])
				if err != nil {
					t.Fatalf("Pick #%d after the ejection: %v", i, err)
				}
				if addr := res.SubConn.(*fakeSubConn).addr; addr == bad {
					t.Fatalf("Pick #%d after the ejection = %s, the ejected endpoint", i, addr)
				}
				if res.Done != nil {
					res.Done(sent)
				}
			}
		})
	}
}

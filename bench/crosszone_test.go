package bench

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/connectivity"
)

const (
	crossZoneEndpoints = 9 // zones a, b, c, a, ...: 3 in each
	crossZonePicks     = 90_000
)

// crossZonePolicies are each policy alone and under lb_locality.
var crossZonePolicies = []policy{
	{label: "round_robin", name: "round_robin", config: `{}`},
	withLocality(policy{label: "round_robin", name: "round_robin", config: `{}`}),
	{label: "lb_p2c_ewma", name: "lb_p2c_ewma", config: `{}`, ours: true},
	withLocality(policy{label: "lb_p2c_ewma", name: "lb_p2c_ewma", config: `{}`}),
}

// BenchmarkCrossZone is the share of calls that leave the client's zone:
// 9 instances, 3 in each of zones a, b and c of one region, the client in
// zone a, each policy alone (zone-aware routing off) and under lb_locality
// (on), built over the fake channel as in BenchmarkPick. down=0: every
// instance healthy; down=1: one of zone a's in TRANSIENT_FAILURE, which
// moves 1 - 1.4 × 2/3 of the calls out of the zone under lb_locality's
// default overprovisioning. 90,000 picks, each with its Done, one run
// whatever b.N (use -benchtime 1x); reported: cross-zone-%.
func BenchmarkCrossZone(b *testing.B) {
	for _, down := range []int{0, 1} {
		for _, p := range crossZonePolicies {
			b.Run(fmt.Sprintf("down=%d/policy=%s", down, p.label), func(b *testing.B) {
				bt := buildReady(b, p, crossZoneEndpoints)
				zone := map[string]string{}
				for i, ep := range endpoints(crossZoneEndpoints) {
					zone[ep.Addresses[0].Addr] = zoneOf(i)
				}
				if down > 0 {
					bt.fail(b, 0) // endpoint 0 is in zone a
				}
				picker, infos := bt.cc.latestPicker(), pickInfos(p)
				cross := 0
				for i := range crossZonePicks {
					res, err := picker.Pick(infos[i%len(infos)])
					if err != nil {
						b.Fatalf("Pick #%d: %v", i, err)
					}
					sc := res.SubConn.(*fakeSubConn)
					if down > 0 && sc == bt.cc.subConnOf(b, 0) {
						b.Fatalf("Pick #%d = %s, the endpoint that is down", i, sc.addr)
					}
					if zone[sc.addr] != clientZone {
						cross++
					}
					if res.Done != nil {
						res.Done(sent)
					}
				}
				b.ReportMetric(0, "ns/op") // one run whatever b.N: meaningless
				b.ReportMetric(100*float64(cross)/crossZonePicks, "cross-zone-%")
			})
		}
	}
}

// subConnOf returns the subchannel of endpoint i of endpoints(n).
func (cc *fakeCC) subConnOf(tb testing.TB, i int) *fakeSubConn {
	addr := endpoints(i + 1)[i].Addresses[0].Addr
	cc.mu.Lock()
	defer cc.mu.Unlock()
	for _, sc := range cc.subConns {
		if sc.addr == addr && !sc.shutdown {
			return sc
		}
	}
	tb.Fatalf("no subchannel for %s", addr)
	return nil
}

// fail takes endpoint i's subchannel from READY to TRANSIENT_FAILURE and
// waits for the picker that follows.
func (bt *built) fail(tb testing.TB, i int) {
	tb.Helper()
	sc := bt.cc.subConnOf(tb, i)
	before := bt.cc.latestPicker()
	select {
	case <-bt.cc.updated: // drain
	default:
	}
	// As the channel reports a connection lost and not regained.
	for _, st := range []connectivity.State{connectivity.Idle, connectivity.Connecting, connectivity.TransientFailure} {
		sc.listener(balancer.SubConnState{ConnectivityState: st})
	}
	deadline := time.After(5 * time.Second)
	for bt.cc.latestPicker() == before {
		select {
		case <-bt.cc.updated:
		case <-deadline:
			tb.Fatalf("no new picker 5s after %s failed", sc.addr)
		}
	}
}

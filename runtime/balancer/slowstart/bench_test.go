package slowstart

import (
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/roundrobin"
	"google.golang.org/grpc/connectivity"
	estats "google.golang.org/grpc/experimental/stats"
	"google.golang.org/grpc/resolver"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/internal/clock"
)

// fakeCC is the channel under a balancer built by hand: it keeps its
// SubConns, which the test makes READY, and the last picker.
type fakeCC struct {
	balancer.ClientConn
	picker balancer.Picker
	scs    []*benchSubConn
}

type benchSubConn struct {
	balancer.SubConn
	listener, health func(balancer.SubConnState)
}

func (*benchSubConn) Connect()                                                {}
func (*benchSubConn) Shutdown()                                               {}
func (sc *benchSubConn) RegisterHealthListener(l func(balancer.SubConnState)) { sc.health = l }

func (c *fakeCC) NewSubConn(_ []resolver.Address, opts balancer.NewSubConnOptions) (balancer.SubConn, error) {
	sc := &benchSubConn{listener: opts.StateListener}
	c.scs = append(c.scs, sc)
	return sc, nil
}
func (c *fakeCC) UpdateState(s balancer.State)          { c.picker = s.Picker }
func (*fakeCC) MetricsRecorder() estats.MetricsRecorder { return nil }
func (*fakeCC) ResolveNow(resolver.ResolveNowOptions)   {}
func (*fakeCC) Target() string                          { return "bench" }

// buildRoundRobin builds lb_slow_start over round_robin on 10 READY
// instances, the last registered at age new (0: all warm), and returns the
// balancer and the channel.
func buildRoundRobin(tb testing.TB, c *clock.Fake, newAge time.Duration) (*slowStartBalancer, *fakeCC) {
	tb.Helper()
	cc := &fakeCC{}
	b := builder{}.Build(cc, balancer.BuildOptions{}).(*slowStartBalancer)
	eps := make([]resolver.Endpoint, 10)
	for i := range eps {
		at := c.Now().Add(-time.Hour)
		if i == 9 && newAge != 0 {
			at = c.Now().Add(-newAge)
		}
		eps[i] = discovery.Endpoint("10.0.0."+strconv.Itoa(i+1)+":1", discovery.Metadata{RegisteredAt: at})
	}
	cfg, err := ParseConfig([]byte(`{"window":"10s","childPolicy":[{"` + roundrobin.Name + `":{}}]}`))
	if err != nil {
		tb.Fatal(err)
	}
	if err := b.UpdateClientConnState(balancer.ClientConnState{ResolverState: resolver.State{Endpoints: eps}, BalancerConfig: cfg}); err != nil {
		tb.Fatal(err)
	}
	for _, sc := range cc.scs {
		sc.listener(balancer.SubConnState{ConnectivityState: connectivity.Connecting})
		sc.listener(balancer.SubConnState{ConnectivityState: connectivity.Ready})
		if sc.health != nil {
			sc.health(balancer.SubConnState{ConnectivityState: connectivity.Ready})
		}
	}
	tb.Cleanup(b.Close)
	return b, cc
}

// BenchmarkPick: round_robin's picker alone, and under lb_slow_start with
// no warming instance and with one of 10 warming (at 50%).
func BenchmarkPick(b *testing.B) {
	c := clock.NewFake(time.Unix(1e9, 0))
	b.Cleanup(SetClock(c))
	for _, bc := range []struct {
		name   string
		newAge time.Duration
		alone  bool
	}{
		{name: "round_robin", alone: true},
		{name: "slow_start/none_warming"},
		{name: "slow_start/one_warming", newAge: 5 * time.Second},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ssb, cc := buildRoundRobin(b, c, bc.newAge)
			p := cc.picker
			if bc.alone {
				p = ssb.last.Picker
			}
			if _, err := p.Pick(balancer.PickInfo{}); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				p.Pick(balancer.PickInfo{})
			}
		})
	}
}

// TestDescribe: the live page reads "warming (N%)" of the warming instance
// and nothing of the others; the picker over real round_robin hands the
// channel its own SubConns.
func TestDescribe(t *testing.T) {
	c := clock.NewFake(time.Unix(1e9, 0))
	t.Cleanup(SetClock(c))
	b, cc := buildRoundRobin(t, c, 3*time.Second)
	c.Advance(700 * time.Millisecond)
	got := b.describe()
	if len(got) != 1 || got["10.0.0.10:1"] != "warming (37%)" {
		t.Errorf("describe() = %v, want 10.0.0.10:1 warming (37%%) alone", got)
	}
	res, err := cc.picker.Pick(balancer.PickInfo{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := res.SubConn.(*benchSubConn); !ok {
		t.Errorf("Pick() = %T, want the channel's SubConn", res.SubConn)
	}
	c.Advance(10 * time.Second)
	if got := b.describe(); len(got) != 0 {
		t.Errorf("describe() after the window = %v, want nothing", got)
	}
}

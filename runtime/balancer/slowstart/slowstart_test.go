package slowstart

import (
	"math"
	"testing"
	"time"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/connectivity"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/internal/parent"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/internal/clock"
)

func TestFactor(t *testing.T) {
	const s = int64(time.Second)
	for _, tc := range []struct {
		cfg  Config
		age  int64
		want float64
	}{
		{Config{Window: 10 * time.Second}, -s, 0.1},
		{Config{Window: 10 * time.Second}, 0, 0.1},
		{Config{Window: 10 * time.Second}, s, 0.1},
		{Config{Window: 10 * time.Second}, 3 * s, 0.3},
		{Config{Window: 10 * time.Second}, 37 * s / 10, 0.37},
		{Config{Window: 10 * time.Second}, 10 * s, 1},
		{Config{Window: 10 * time.Second}, 3600 * s, 1},
		{Config{Window: 10 * time.Second, MinWeightPercent: 50}, 3 * s, 0.5},
		{Config{Window: 10 * time.Second, Aggression: 2}, 25 * s / 10, 0.5}, // sqrt(0.25)
		{Config{Window: 10 * time.Second, Aggression: 0.5}, 5 * s, 0.25},    // 0.5²
		{Config{Window: 10 * time.Second, Aggression: 0.5, MinWeightPercent: 1}, 2 * s, 0.04},
	} {
		if got := newRamp(&tc.cfg).factor(tc.age); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("factor(%+v, age %v) = %v, want %v", tc.cfg, time.Duration(tc.age), got, tc.want)
		}
	}
}

// fleet is n instances, registered (or first READY) at the given ages, all
// READY.
func fleet(now int64, ages ...time.Duration) map[string]*instance {
	m := map[string]*instance{}
	for i, age := range ages {
		in := newInstance(string(rune('a' + i)))
		in.start.Store(now - int64(age))
		in.ready = 1
		m[in.addr] = in
	}
	return m
}

// TestEvaluate: an instance ramps within its window, unless no READY
// instance is warm.
func TestEvaluate(t *testing.T) {
	r := newRamp(&Config{Window: 10 * time.Second})
	const now = int64(time.Hour)
	for _, tc := range []struct {
		name    string
		ages    []time.Duration
		notRdy  string // an instance that is not READY
		ramping string // the instances that ramp
	}{
		{name: "9 warm, 1 new", ages: []time.Duration{time.Hour, time.Hour, time.Minute, 3 * time.Second}, ramping: "d"},
		{name: "all new", ages: []time.Duration{3 * time.Second, 5 * time.Second, 9 * time.Second}},
		{name: "the warm one is down", ages: []time.Duration{time.Hour, 3 * time.Second, 5 * time.Second}, notRdy: "a"},
		{name: "two new", ages: []time.Duration{time.Hour, 3 * time.Second, 5 * time.Second}, ramping: "bc"},
		{name: "window just ended", ages: []time.Duration{time.Hour, 10 * time.Second}},
	} {
		m := fleet(now, tc.ages...)
		if in := m[tc.notRdy]; in != nil {
			in.ready = 0
		}
		evaluate(m, r, now)
		got := ""
		for _, addr := range []string{"a", "b", "c", "d"} {
			if in := m[addr]; in != nil && in.until.Load() != 0 {
				got += addr
			}
		}
		if got != tc.ramping {
			t.Errorf("%s: ramping %q, want %q", tc.name, got, tc.ramping)
		}
	}
}

// rrPicker is a round robin over scs, counting the Dones of thrown-away
// picks.
type rrPicker struct {
	scs     []balancer.SubConn
	next    int
	notUsed int
	done    func(balancer.DoneInfo)
}

func (p *rrPicker) Pick(balancer.PickInfo) (balancer.PickResult, error) {
	sc := p.scs[p.next%len(p.scs)]
	p.next++
	if p.done == nil {
		p.done = func(di balancer.DoneInfo) {
			if di.Err == parent.ErrNotUsed {
				p.notUsed++
			}
		}
	}
	return balancer.PickResult{SubConn: sc, Done: p.done}, nil
}

type fakeSubConn struct {
	balancer.SubConn
	name string
}

// TestShare: a warming instance of factor f among n-1 warm ones under
// round robin takes f/(n-1+f) of the picks, and each pick thrown away is
// told to the child.
func TestShare(t *testing.T) {
	c := clock.NewFake(time.Unix(1e9, 0))
	t.Cleanup(SetClock(c))
	r := newRamp(&Config{Window: 10 * time.Second})
	for _, age := range []time.Duration{0, 3 * time.Second, 5 * time.Second, 9 * time.Second} {
		const n = 10
		m := fleet(c.Nanotime(), time.Hour, time.Hour, time.Hour, time.Hour, time.Hour, time.Hour, time.Hour, time.Hour, time.Hour, age)
		evaluate(m, r, c.Nanotime())
		child := &rrPicker{}
		inner := map[balancer.SubConn]string{}
		for _, in := range m {
			sc := &fakeSubConn{name: in.addr}
			inner[sc] = in.addr
			child.scs = append(child.scs, &subConn{SubConn: sc, in: in})
		}
		p := newPicker(child, r, true)
		const picks = 200_000
		newOnes := 0
		for range picks {
			res, err := p.Pick(balancer.PickInfo{})
			if err != nil {
				t.Fatal(err)
			}
			addr, ok := inner[res.SubConn]
			if !ok {
				t.Fatalf("Pick() returned %v, not the SubConn inside", res.SubConn)
			}
			if addr == "j" {
				newOnes++
			}
		}
		f := r.factor(int64(age))
		want := f / (n - 1 + f)
		if got := float64(newOnes) / picks; math.Abs(got-want) > 0.005 {
			t.Errorf("age %v: share %.4f, want %.4f", age, got, want)
		}
		if want := child.next - picks; child.notUsed != want {
			t.Errorf("age %v: %d picks thrown away, %d told not used", age, want, child.notUsed)
		}
	}
}

// TestPickAllocs: a pick allocates nothing, warming instance or not.
func TestPickAllocs(t *testing.T) {
	c := clock.NewFake(time.Unix(1e9, 0))
	t.Cleanup(SetClock(c))
	r := newRamp(&Config{Window: 10 * time.Second})
	m := fleet(c.Nanotime(), time.Hour, time.Second)
	evaluate(m, r, c.Nanotime())
	child := &rrPicker{}
	for _, in := range m {
		child.scs = append(child.scs, &subConn{SubConn: &fakeSubConn{}, in: in})
	}
	p := newPicker(child, r, true)
	if n := testing.AllocsPerRun(1000, func() { p.Pick(balancer.PickInfo{}) }); n != 0 {
		t.Errorf("Pick allocates %v times, want 0", n)
	}
}

// TestFirstReady: without a registration time an instance ramps from its
// first READY, and not again when it reconnects.
func TestFirstReady(t *testing.T) {
	c := clock.NewFake(time.Unix(1e9, 0))
	t.Cleanup(SetClock(c))
	b := &slowStartBalancer{instances: map[string]*instance{}, byAddr: map[string]*instance{}}
	in := b.instanceOf("10.0.0.1:1#2")
	if in.addr != "10.0.0.1:1" || b.instanceOf("10.0.0.1:1") != in {
		t.Fatalf("a pool copy's address is not its instance's")
	}
	b.stateChanged(in, connectivity.Idle, connectivity.Connecting)
	c.Advance(time.Second)
	b.stateChanged(in, connectivity.Connecting, connectivity.Ready)
	first := in.start.Load()
	if first != c.Nanotime() || in.ready != 1 {
		t.Fatalf("start %d, ready %d after READY at %d", first, in.ready, c.Nanotime())
	}
	c.Advance(time.Second)
	b.stateChanged(in, connectivity.Ready, connectivity.Idle)
	b.stateChanged(in, connectivity.Idle, connectivity.Ready)
	if in.start.Load() != first || in.ready != 1 {
		t.Errorf("start %d, ready %d after reconnecting; want %d, 1", in.start.Load(), in.ready, first)
	}
}

package p2cewma

import (
	"errors"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
	"unsafe"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/internal/parent"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/internal/clock"
)

// fixedPicker always picks its endpoint.
type fixedPicker struct{ id int }

func (p fixedPicker) Pick(balancer.PickInfo) (balancer.PickResult, error) {
	return balancer.PickResult{Metadata: nil}, nil
}

// sent is the DoneInfo of a call that went out and came back.
var sent = balancer.DoneInfo{BytesSent: true, BytesReceived: true}

// useClock makes the picks and Dones of one test read a fake clock, at
// one hour.
func useClock(t *testing.T) *clock.Fake {
	c := clock.NewFake(time.Unix(0, 0))
	c.Advance(time.Hour)
	use(t, c)
	return c
}

// use makes the picks and Dones read c until the test ends.
func use(t *testing.T, c clock.Clock) {
	old, oldRead := clk, lastRead.Load()
	clk = c
	lastRead.Store(c.Nanotime())
	t.Cleanup(func() { clk = old; lastRead.Store(oldRead) })
}

func newStats() *stats {
	st := &stats{}
	st.Init()
	return st
}

// taken is how many of the endpoint's slots hold a timed call.
func taken(st *stats) int {
	n := 0
	for k := range st.slot {
		if st.slot[k].Load() != 0 {
			n++
		}
	}
	return n
}

func newChildren(n int) []child {
	cs := make([]child, n)
	for i := range cs {
		cs[i] = child{picker: fixedPicker{i}, st: newStats()}
	}
	return cs
}

// call picks, lets the call take rtt, and returns the index of the child
// picked.
func call(t *testing.T, p *picker, c *clock.Fake, rtt time.Duration, err error) int {
	t.Helper()
	res, perr := p.Pick(balancer.PickInfo{})
	if perr != nil {
		t.Fatal(perr)
	}
	// Which child? the one whose picked time is now and inflight is 1.
	idx := -1
	for i, ch := range p.children {
		if ch.st.inflight.Load() == 1 {
			idx = i
		}
	}
	c.Advance(rtt)
	res.Done(balancer.DoneInfo{Err: err, BytesSent: true, BytesReceived: err == nil})
	return idx
}

func TestAvoidsTheSlowEndpoint(t *testing.T) {
	c := useClock(t)
	children := newChildren(5)
	p := newPicker(children, DefaultDecay, DefaultProbe)
	counts := make([]int, 5)
	for range 5000 {
		i := call(t, p, c, time.Millisecond, nil)
		if i == 4 {
			// The slow one: 20 ms more.
			children[4].st.observe(21e6, c.Nanotime(), 1/float64(DefaultDecay), false)
		}
		counts[i]++
		c.Advance(time.Millisecond) // 1,000 calls a second
	}
	if share := float64(counts[4]) / 5000; share > 0.02 {
		t.Errorf("the slow endpoint got %.1f%% of the calls (%v), want at most 2%%", 100*share, counts)
	}
	t.Logf("calls per endpoint, the last one 20 ms slower: %v", counts)
}

// TestRecoveredEndpointGetsItsShareBack: an endpoint 20 ms slower, then
// fast again, is probed within Probe, and that probe's latency replaces its
// average; from then on it takes calls as the others do. Its share varies
// as theirs does (p2c among near-equal endpoints herds for seconds: over
// 20,000 calls, 9% to 30% in 20,000 runs, 20% on average), so the count
// is over 20,000 calls and wants a quarter of the others' mean; still
// slow, it would get a probe every 3 s, about 15.
func TestRecoveredEndpointGetsItsShareBack(t *testing.T) {
	c := useClock(t)
	children := newChildren(5)
	p := newPicker(children, DefaultDecay, DefaultProbe)
	slow := true
	counts := make([]int, 5)
	one := func() {
		// 1 ms ± 20%: real latencies are never all the same.
		i := call(t, p, c, time.Duration(800_000+rand.IntN(400_000)), nil)
		counts[i]++
		if i == 4 && slow {
			children[4].st.observe(21e6, c.Nanotime(), 1/float64(DefaultDecay), false)
		}
		c.Advance(time.Millisecond)
	}
	for range 3000 {
		one()
	}
	slow = false
	fast := c.Nanotime()
	clear(counts)
	for counts[4] == 0 {
		if d := time.Duration(c.Nanotime() - fast); d > DefaultProbe+100*time.Millisecond {
			t.Fatalf("%v after being fast again, the endpoint was not probed", d)
		}
		one()
	}
	probed := time.Duration(c.Nanotime() - fast)
	if v := math.Float64frombits(children[4].st.ewma.Load()); v > 1.2e6 {
		t.Fatalf("probed %v after being fast again, the endpoint's average is %.0f ns, want the probe's latency (at most 1.2 ms)", probed, v)
	}
	t.Logf("probed %v after being fast again", probed)
	clear(counts)
	for range 20000 {
		one()
	}
	t.Logf("calls per endpoint over the next 20,000, the last one recovered: %v", counts)
	if others := float64(counts[0]+counts[1]+counts[2]+counts[3]) / 4; float64(counts[4]) < others/4 {
		t.Errorf("after its probe, the endpoint got %d of 20,000 calls, the others %v: want at least a quarter of their mean", counts[4], counts[:4])
	}
}

func TestNewEndpointStartsNeutral(t *testing.T) {
	c := useClock(t)
	children := newChildren(4)
	for _, ch := range children[:3] {
		ch.st.observe(5e6, c.Nanotime(), 1e-9, false)
	}
	p := newPicker(children, DefaultDecay, DefaultProbe)
	if p.neutral != 5e6 {
		t.Errorf("neutral score base %v, want the others' average 5e6", p.neutral)
	}
	counts := make([]int, 4)
	for range 4000 {
		counts[call(t, p, c, 5*time.Millisecond, nil)]++
		c.Advance(time.Millisecond)
	}
	// No flood to the new one, no starvation either.
	if counts[3] < 600 || counts[3] > 1400 {
		t.Errorf("a new endpoint among 4 equal ones got %d of 4000 calls, want about 1000 (%v)", counts[3], counts)
	}
}

func TestFailuresArePenalised(t *testing.T) {
	c := useClock(t)
	st := newStats()
	children := []child{{picker: fixedPicker{0}, st: st}}
	p := newPicker(children, DefaultDecay, DefaultProbe)
	call(t, p, c, time.Millisecond, status.Error(codes.Unavailable, "down"))
	if v := math.Float64frombits(st.ewma.Load()); v < float64(FailurePenalty) {
		t.Errorf("after a fast UNAVAILABLE the average is %v ns, want at least the penalty %v", v, FailurePenalty)
	}
	st2 := newStats()
	p2 := newPicker([]child{{picker: fixedPicker{0}, st: st2}}, DefaultDecay, DefaultProbe)
	call(t, p2, c, time.Millisecond, status.Error(codes.NotFound, "no such user"))
	if v := math.Float64frombits(st2.ewma.Load()); v != 1e6 {
		t.Errorf("after a NOT_FOUND the average is %v ns, want the latency 1e6: application errors are not the endpoint's fault", v)
	}
	_ = errors.New
}

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct {
		js      string
		want    time.Duration
		wantErr string
	}{
		{``, DefaultDecay, ""},
		{`{}`, DefaultDecay, ""},
		{`{"decay":"2.5s"}`, 2500 * time.Millisecond, ""},
		{`{"decay":"0s"}`, 0, "must be positive"},
		{`{"decay":"soon"}`, 0, `decay "soon"`},
		{`{"decay":5}`, 0, "cannot unmarshal"},
		{`{"probe":"0s"}`, 0, "probe 0s must be positive"},
		{`{"probe":"later"}`, 0, `probe "later"`},
	} {
		cfg, err := ParseConfig([]byte(tc.js))
		switch {
		case tc.wantErr != "" && (err == nil || !contains(err.Error(), tc.wantErr)):
			t.Errorf("ParseConfig(%s) = %v, want an error containing %q", tc.js, err, tc.wantErr)
		case tc.wantErr == "" && (err != nil || cfg.Decay != tc.want):
			t.Errorf("ParseConfig(%s) = %+v, %v; want decay %v", tc.js, cfg, err, tc.want)
		}
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

func TestPickAllocatesNothing(t *testing.T) {
	p := newPicker(newChildren(10), DefaultDecay, DefaultProbe)
	if n := testing.AllocsPerRun(1000, func() {
		res, _ := p.Pick(balancer.PickInfo{})
		res.Done(sent)
	}); n != 0 {
		t.Errorf("Pick+Done allocates %v times, want 0", n)
	}
	// Picks whose Done never comes: their slots stay taken, and the picks
	// still allocate nothing.
	if n := testing.AllocsPerRun(1000, func() { p.Pick(balancer.PickInfo{}) }); n != 0 {
		t.Errorf("Pick without Done allocates %v times, want 0", n)
	}
}

func TestStatsFillTwoCacheLines(t *testing.T) {
	if n := unsafe.Sizeof(stats{}); n != 128 {
		t.Errorf("stats is %d bytes, want 128", n)
	}
	if off := unsafe.Offsetof(stats{}.rate); off != 64 {
		t.Errorf("what calls only read starts at byte %d, want 64: the second cache line", off)
	}
	// The lines are lines only if the stats start on one: Go's allocator
	// puts 128-byte objects at multiples of 128 in page-aligned spans.
	for range 100 {
		if p := uintptr(unsafe.Pointer(newStats())); p%128 != 0 {
			t.Fatalf("stats at %#x, not on a 128-byte boundary", p)
		}
	}
}

// TestTimedSlots: an endpoint has TimedSlots timed calls in flight at most;
// a call that should be timed beyond them goes untimed (no clock reading,
// no sample at its end), a Done frees its slot, and each timed call's
// latency is its own, whatever order the calls end in.
func TestTimedSlots(t *testing.T) {
	c, reads := countingClock(t)
	st := newStats()
	p := newPicker([]child{{picker: fixedPicker{0}, st: st}}, DefaultDecay, DefaultProbe)
	// No sample yet: every call should be timed, the first TimedSlots are.
	var dones []func(balancer.DoneInfo)
	for i := range TimedSlots + 3 {
		before := *reads
		res, err := p.Pick(balancer.PickInfo{})
		if err != nil {
			t.Fatal(err)
		}
		want := 0
		if i < TimedSlots {
			want = 1
		}
		if got := *reads - before; got != want {
			t.Fatalf("call %d read the clock %d times at its pick, want %d", i, got, want)
		}
		dones = append(dones, res.Done)
		c.Advance(time.Millisecond)
	}
	if n := taken(st); n != TimedSlots {
		t.Fatalf("%d slots taken after %d timed picks, want all %d", n, TimedSlots, TimedSlots)
	}
	// An untimed call ends: no sample.
	before := *reads
	dones[TimedSlots](sent)
	if *reads != before || st.last.Load() != 0 {
		t.Fatalf("an untimed call's end read the clock %d times, last sample %d; want none", *reads-before, st.last.Load())
	}
	// The timed calls end last first: call k left at k ms, and ends at
	// 10+TimedSlots ms, so its latency is 10+TimedSlots-k ms, and each
	// replaces the average only when it is the higher (a peak).
	c.Advance(time.Duration(int64(time.Hour) + int64(10+TimedSlots)*int64(time.Millisecond) - c.Nanotime())) // to 1 h + (10+TimedSlots) ms
	for k := TimedSlots - 1; k >= 0; k-- {
		dones[k](sent)
		if st.slot[k].Load() != 0 {
			t.Fatalf("slot %d still taken after its Done", k)
		}
	}
	want := float64(10+TimedSlots) * 1e6 // the first call's, a peak
	if got := math.Float64frombits(st.ewma.Load()); got != want {
		t.Errorf("average %v ns after the timed calls, want the highest latency %v", got, want)
	}
	if got := st.inflight.Load(); got != 2 {
		t.Errorf("%d calls in flight, want the 2 untimed ones not yet done", got)
	}
	// The slots are free again: a call to the endpoint, whose last sample
	// is stale, is timed.
	c.Advance(DefaultDecay)
	lastRead.Store(c.Nanotime())
	res, _ := p.Pick(balancer.PickInfo{})
	c.Advance(time.Millisecond)
	res.Done(sent)
	if got := st.last.Load(); got != c.Nanotime() {
		t.Errorf("last sample at %d, want the stale endpoint's call timed, at its end %d", got, c.Nanotime())
	}
	for _, d := range dones[TimedSlots+1:] {
		d(sent)
	}
	if got := st.inflight.Load(); got != 0 {
		t.Errorf("%d calls in flight after every Done, want 0", got)
	}
}

// TestConcurrentCallsFreeTheirSlots: goroutines picking and finishing at
// once leave no slot taken and no call in flight, and the endpoints keep
// being timed.
func TestConcurrentCallsFreeTheirSlots(t *testing.T) {
	children := newChildren(3)
	p := newPicker(children, DefaultDecay, DefaultProbe)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 5000 {
				res, err := p.Pick(balancer.PickInfo{})
				if err != nil {
					t.Error(err)
					return
				}
				res.Done(sent)
			}
		})
	}
	wg.Wait()
	for i, ch := range children {
		if n := taken(ch.st); n != 0 {
			t.Errorf("endpoint %d: %d slots taken after every Done, want none", i, n)
		}
		if got := ch.st.inflight.Load(); got != 0 {
			t.Errorf("endpoint %d: %d calls in flight after every Done, want 0", i, got)
		}
		if ch.st.last.Load() == 0 {
			t.Errorf("endpoint %d was never timed", i)
		}
		// Two calls in one slot would time one from the other's start.
		if v := math.Float64frombits(ch.st.ewma.Load()); v <= 0 || v > float64(time.Second) {
			t.Errorf("endpoint %d: average %v ns, want a call's latency (well under 1 s)", i, v)
		}
	}
}

// TestLongCallsDoNotStopSampling: calls that hold every slot (streams that
// live for hours, picks whose Done never came) keep the next calls untimed
// only until one of them has been held for HeldDecays decays; then a call
// that should be timed is, with a record of its own.
func TestLongCallsDoNotStopSampling(t *testing.T) {
	c, reads := countingClock(t)
	st := newStats()
	p := newPicker([]child{{picker: fixedPicker{0}, st: st}}, DefaultDecay, DefaultProbe)
	for range TimedSlots { // the first calls, all timed: they take every slot
		if _, err := p.Pick(balancer.PickInfo{}); err != nil {
			t.Fatal(err)
		}
	}
	c.Advance(HeldDecays * DefaultDecay) // just not longer
	lastRead.Store(c.Nanotime())
	before := *reads
	call(t, p, c, time.Millisecond, nil)
	if *reads != before || st.last.Load() != 0 {
		t.Fatalf("with the slots held for %d decays, a call read the clock %d times and sampled at %d; want it untimed", HeldDecays, *reads-before, st.last.Load())
	}
	c.Advance(1)
	lastRead.Store(c.Nanotime())
	call(t, p, c, 3*time.Millisecond, nil)
	if got := st.last.Load(); got != c.Nanotime() {
		t.Fatalf("with the slots held for longer, last sample at %d; want the call timed, at its end %d", got, c.Nanotime())
	}
	if got := math.Float64frombits(st.ewma.Load()); got != 3e6 {
		t.Errorf("average %v ns, want the call's 3 ms", got)
	}
	if got := st.inflight.Load(); got != TimedSlots {
		t.Errorf("%d calls in flight, want the %d holding the slots", got, TimedSlots)
	}
}

// TestUnsentPicksSayNothing: grpc-go calls Done with an empty DoneInfo
// for a pick it could not use (the subchannel stopped being ready); that
// is not a call that took no time, and a thrown-away pick (ErrNotUsed)
// is not one either. Both free their slots.
func TestUnsentPicksSayNothing(t *testing.T) {
	c := useClock(t)
	st := newStats()
	p := newPicker([]child{{picker: fixedPicker{0}, st: st}}, DefaultDecay, DefaultProbe)
	for _, di := range []balancer.DoneInfo{{}, {Err: parent.ErrNotUsed}} {
		res, err := p.Pick(balancer.PickInfo{}) // no sample yet: timed
		if err != nil {
			t.Fatal(err)
		}
		c.Advance(time.Millisecond)
		res.Done(di)
		if st.last.Load() != 0 || st.ewma.Load() != 0 {
			t.Fatalf("Done(%+v) took a sample, want none", di)
		}
		if n := taken(st); n != 0 {
			t.Fatalf("Done(%+v) left %d slots taken", di, n)
		}
	}
	if got := st.inflight.Load(); got != 0 {
		t.Errorf("%d calls in flight, want 0", got)
	}
}

// TestProbeReplacesTheAverage: a probe's latency replaces the average
// outright, where another call's lower latency only pulls it down.
func TestProbeReplacesTheAverage(t *testing.T) {
	c := useClock(t)
	children := newChildren(2)
	p := newPicker(children, DefaultDecay, DefaultProbe)
	slow, fast := children[0].st, children[1].st
	slow.observe(50e6, c.Nanotime(), 1/float64(DefaultDecay), false)
	fast.observe(1e6, c.Nanotime(), 1/float64(DefaultDecay), false)
	slow.picked.Store(c.Nanotime())
	c.Advance(DefaultProbe + time.Millisecond) // the slow one is due for a probe
	lastRead.Store(c.Nanotime())
	fast.picked.Store(c.Nanotime()) // the fast one is not
	if i := call(t, p, c, time.Millisecond, nil); i != 0 {
		t.Fatalf("picked endpoint %d, want the one due for a probe", i)
	}
	// Pulled down by the decay over 3 s, the average would be about 3.4 ms.
	if got := math.Float64frombits(slow.ewma.Load()); got != 1e6 {
		t.Errorf("average %v ns after a 1 ms probe, want 1e6", got)
	}
}

// BenchmarkPick is one pick and its Done among 10 endpoints.
func BenchmarkPick(b *testing.B) {
	p := newPicker(newChildren(10), DefaultDecay, DefaultProbe)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			res, _ := p.Pick(balancer.PickInfo{})
			res.Done(sent)
		}
	})
}

func TestExpNeg(t *testing.T) {
	for x := 0.0; x < 50; x += 0.01 {
		got, want := expNeg(x), math.Exp(-x)
		if d := math.Abs(got - want); d > 0.002 || (x <= 3 && d > 0.01*want) {
			t.Fatalf("expNeg(%v) = %v, want %v", x, got, want)
		}
	}
}

// TestProbesAreRare: at 1,000 calls a second for 10 s, an endpoint 20 ms
// slower gets a probe every Probe (3 s) and little else: at most 0.1% of
// the calls, so it stays out of the p99.9.
func TestProbesAreRare(t *testing.T) {
	c := useClock(t)
	children := newChildren(10)
	p := newPicker(children, DefaultDecay, DefaultProbe)
	slow := 0
	for range 10000 {
		if i := call(t, p, c, time.Millisecond, nil); i == 9 {
			slow++
			children[9].st.observe(21e6, c.Nanotime(), 1/float64(DefaultDecay), false)
		}
		c.Advance(time.Millisecond)
	}
	t.Logf("the slow endpoint got %d of 10,000 calls", slow)
	if slow > 10 {
		t.Errorf("the slow endpoint got %d of 10,000 calls, want at most 10 (a probe every 3 s)", slow)
	}
}

// counting is a fake clock that counts its readings.
type counting struct {
	*clock.Fake
	reads int
}

func (c *counting) Nanotime() int64 {
	c.reads++
	return c.Fake.Nanotime()
}

// countingClock is a fake clock at one hour that counts its readings.
func countingClock(t *testing.T) (*clock.Fake, *int) {
	c := &counting{Fake: clock.NewFake(time.Unix(0, 0))}
	c.Advance(time.Hour)
	use(t, c)
	return c.Fake, &c.reads
}

// TestClockIsReadForFewCalls: at 1,000 calls a second over 10 endpoints,
// about one call in SampleEvery is timed (two readings each).
func TestClockIsReadForFewCalls(t *testing.T) {
	c, reads := countingClock(t)
	p := newPicker(newChildren(10), DefaultDecay, DefaultProbe)
	const calls = 10000
	for range calls {
		call(t, p, c, time.Millisecond, nil)
		c.Advance(time.Millisecond)
	}
	got := float64(*reads) / calls
	t.Logf("%.2f clock readings a call", got)
	if want := 2.0 / SampleEvery; got < want*0.8 || got > want*1.3 {
		t.Errorf("%.2f clock readings a call, want about %.2f", got, want)
	}
}

// TestSparseEndpointsAreTimed: at 10 calls a second over 10 endpoints,
// every call to an endpoint whose last sample is more than decay/4 older
// than the picker's time (the process's latest clock reading) is timed,
// and most calls are.
func TestSparseEndpointsAreTimed(t *testing.T) {
	c, reads := countingClock(t)
	children := newChildren(10)
	p := newPicker(children, DefaultDecay, DefaultProbe)
	const calls = 1000
	stale := 0
	for k := range calls {
		now := lastRead.Load() // the picker's time
		last := make([]int64, len(children))
		for i, ch := range children {
			last[i] = ch.st.last.Load()
		}
		i := call(t, p, c, time.Millisecond, nil)
		if now-last[i] > p.stale {
			stale++
			if got := children[i].st.last.Load(); got != c.Nanotime() {
				t.Fatalf("call %d: endpoint %d, last sampled %v before, was not timed", k, i, time.Duration(now-last[i]))
			}
		}
		c.Advance(100 * time.Millisecond)
	}
	t.Logf("%d of %d calls found their endpoint without a recent sample; %.2f clock readings a call", stale, calls, float64(*reads)/calls)
	if stale < calls/2 {
		t.Errorf("only %d of %d calls found their endpoint without a sample in decay/4, want most", stale, calls)
	}
}

// TestFirstCallsAreTimed: in a process whose pickers have not read the
// clock yet, the first call to each endpoint is timed, so that every
// endpoint has a latency (and a score) once it has been called. 20 rounds:
// by chance alone (one call in SampleEvery) a round passes 1 time in 4.
func TestFirstCallsAreTimed(t *testing.T) {
	c, _ := countingClock(t)
	for round := range 20 {
		lastRead.Store(0) // a process that has not read the clock yet
		children := newChildren(3)
		p := newPicker(children, DefaultDecay, DefaultProbe)
		for calls, called := 0, 0; called < len(children); calls++ {
			i := call(t, p, c, time.Millisecond, nil)
			if children[i].st.last.Load() == 0 {
				t.Fatalf("round %d, call %d: the first call to endpoint %d was not timed", round, calls, i)
			}
			c.Advance(time.Millisecond)
			called = 0
			for _, ch := range children {
				if ch.st.last.Load() != 0 {
					called++
				}
			}
			if calls > 1000 {
				t.Fatalf("round %d: after %d calls only %d of %d endpoints were called", round, calls, called, len(children))
			}
		}
	}
}

// TestUntimedFailuresArePenalised: calls that are not timed still count
// their failures, each at once.
func TestUntimedFailuresArePenalised(t *testing.T) {
	c, reads := countingClock(t)
	st := newStats()
	p := newPicker([]child{{picker: fixedPicker{0}, st: st}}, DefaultDecay, DefaultProbe)
	call(t, p, c, time.Millisecond, nil) // the first sample
	for i := range 100 {
		before := *reads
		c.Advance(time.Millisecond)
		call(t, p, c, time.Millisecond, status.Error(codes.Unavailable, "down"))
		if got := st.last.Load(); got != c.Nanotime() {
			t.Fatalf("failed call %d: last sample at %d, want the call's end %d", i, got, c.Nanotime())
		}
		if v := math.Float64frombits(st.ewma.Load()); v < float64(FailurePenalty) {
			t.Fatalf("failed call %d: average %v, want at least the penalty", i, v)
		}
		if *reads-before > 2 {
			t.Fatalf("failed call %d read the clock %d times", i, *reads-before)
		}
	}
}

// TestStreamsAreNotLatencies: a stream of a method in Config.Streams that
// lasts 2 s leaves its endpoint's latency unsampled (a first call is
// always timed otherwise: the 2 s would become the endpoint's average, and
// one sequential caller would send it nothing until its next probe), is
// never a probe, counts in flight while it lasts, and counts
// FailurePenalty when it fails.
func TestStreamsAreNotLatencies(t *testing.T) {
	const watch = "/pkg.Svc/Watch"
	c := useClock(t)
	for _, listed := range []bool{true, false} {
		children := newChildren(1)
		p := newPicker(children, DefaultDecay, DefaultProbe)
		if listed {
			p.streams = map[string]bool{watch: true}
		}
		st := children[0].st
		res, err := p.Pick(balancer.PickInfo{FullMethodName: watch})
		if err != nil {
			t.Fatal(err)
		}
		if st.inflight.Load() != 1 {
			t.Errorf("listed %v: a stream in flight counts %d, want 1", listed, st.inflight.Load())
		}
		c.Advance(2 * time.Second)
		res.Done(balancer.DoneInfo{BytesSent: true, BytesReceived: true})
		got := time.Duration(math.Float64frombits(st.ewma.Load()))
		switch {
		case listed && got != 0:
			t.Errorf("a listed stream of 2 s set the latency average to %v, want no sample", got)
		case !listed && got != 2*time.Second:
			t.Errorf("an unlisted stream of 2 s set the average to %v, want 2s (else the test could not tell)", got)
		}
		if st.inflight.Load() != 0 {
			t.Errorf("listed %v: %d in flight after the stream's Done, want 0", listed, st.inflight.Load())
		}
	}

	// A failing stream counts the penalty; a stream is never a probe.
	children := newChildren(2)
	p := newPicker(children, DefaultDecay, DefaultProbe)
	p.streams = map[string]bool{watch: true}
	c.Advance(time.Hour) // both due for a probe
	lastRead.Store(c.Nanotime())
	res, err := p.Pick(balancer.PickInfo{FullMethodName: watch})
	if err != nil {
		t.Fatal(err)
	}
	for i, ch := range children {
		if n := taken(ch.st); n != 0 {
			t.Errorf("child %d: the stream, due for a probe, took %d timed slots, want none", i, n)
		}
	}
	res.Done(balancer.DoneInfo{Err: status.Error(codes.Unavailable, "gone"), BytesSent: true})
	var penalized int
	for _, ch := range children {
		if time.Duration(math.Float64frombits(ch.st.ewma.Load())) == FailurePenalty {
			penalized++
		}
	}
	if penalized != 1 {
		t.Errorf("a failed stream penalized %d endpoints, want 1", penalized)
	}
}

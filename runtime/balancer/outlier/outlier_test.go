package outlier

import (
	"testing"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// fixedPicker picks sc, with done as the pick's Done.
type fixedPicker struct {
	sc   balancer.SubConn
	done func(balancer.DoneInfo)
}

func (p fixedPicker) Pick(balancer.PickInfo) (balancer.PickResult, error) {
	return balancer.PickResult{SubConn: p.sc, Done: p.done}, nil
}

// testInstance is an instance of a balancer with the default settings
// (both modes on), and a subchannel of it.
func testInstance() (*instance, *subConn) {
	b := &outlierBalancer{instances: map[string]*instance{}, wake: make(chan struct{}, 1)}
	st := &settings{consecutive: 5, percentage: true, minimum: 50, threshold: 20}
	for _, c := range DefaultFailureCodes {
		st.failure[c] = true
	}
	b.settings.Store(st)
	in := &instance{b: b, name: "a:1", subConns: map[*subConn]bool{}}
	sc := &subConn{b: b, inst: in}
	sc.done = in.record
	return in, sc
}

// TestPickAllocates: a pick and its Done allocate nothing, whether the
// policy has a Done of its own or not, and the outcome is counted.
func TestPickAllocates(t *testing.T) {
	sent := balancer.DoneInfo{BytesSent: true, BytesReceived: true}
	for _, policyDone := range []bool{false, true} {
		in, sc := testInstance()
		var policyDones int
		child := fixedPicker{sc: sc}
		if policyDone {
			child.done = func(balancer.DoneInfo) { policyDones++ }
		}
		p := &picker{child: child}
		allocs := testing.AllocsPerRun(1000, func() {
			res, err := p.Pick(balancer.PickInfo{})
			if err != nil {
				t.Fatal(err)
			}
			if res.SubConn != nil {
				t.Fatal("the pick handed grpc-go the wrapper's SubConn, not the parent's")
			}
			res.Done(sent)
		})
		if allocs != 0 {
			t.Errorf("policy Done %v: a pick and its Done allocate %v objects, want 0", policyDone, allocs)
		}
		if got := in.calls.Load(); got < 1000 {
			t.Errorf("policy Done %v: %d calls counted, want at least 1000", policyDone, got)
		}
		if policyDone && policyDones < 1000 {
			t.Errorf("the policy's Done ran %d times, want at least 1000", policyDones)
		}
	}
}

// TestWhatCounts: server-side codes are failures, the caller's own errors
// successes, a cancel or an unused pick nothing.
func TestWhatCounts(t *testing.T) {
	for _, tc := range []struct {
		di            balancer.DoneInfo
		calls, failed int64
	}{
		{balancer.DoneInfo{BytesSent: true, BytesReceived: true}, 1, 0},
		{balancer.DoneInfo{Err: status.Error(codes.Unavailable, "x")}, 1, 1},
		{balancer.DoneInfo{Err: status.Error(codes.DeadlineExceeded, "x")}, 1, 1},
		{balancer.DoneInfo{Err: status.Error(codes.Internal, "x")}, 1, 1},
		{balancer.DoneInfo{Err: status.Error(codes.InvalidArgument, "x")}, 1, 0},
		{balancer.DoneInfo{Err: status.Error(codes.NotFound, "x")}, 1, 0},
		{balancer.DoneInfo{Err: status.Error(codes.Canceled, "x")}, 0, 0},
		{balancer.DoneInfo{}, 0, 0},
	} {
		in, _ := testInstance()
		in.record(tc.di)
		if in.calls.Load() != tc.calls || in.failures.Load() != tc.failed {
			t.Errorf("%+v: counted %d calls, %d failed; want %d, %d", tc.di, in.calls.Load(), in.failures.Load(), tc.calls, tc.failed)
		}
	}
}

// TestJudgedAtTheMinimum: the failure-percentage mode judges an instance
// as soon as its calls reach the minimum: 10 failures of 50 eject it at
// the 50th call, not at the interval's end; 9 of 50 do not.
func TestJudgedAtTheMinimum(t *testing.T) {
	fail := balancer.DoneInfo{Err: status.Error(codes.Internal, "x")}
	ok := balancer.DoneInfo{BytesSent: true, BytesReceived: true}
	for _, failures := range []int{9, 10} {
		in, _ := testInstance()
		b := in.b
		b.cfg = &Config{}
		*b.cfg = b.cfg.withDefaults()
		b.instances[in.name] = in
		b.count = 10
		for i := range 50 {
			if i%5 == 0 && i/5 < failures {
				in.record(fail)
			} else {
				in.record(ok)
			}
		}
		if got, want := in.out.Load(), failures == 10; got != want {
			t.Errorf("%d failures of 50: ejected %v, want %v", failures, got, want)
		}
	}
}

// TestBlocksAreJudgedAlone: the calls before a failure began do not
// dilute it: after 100 good calls, a block of 50 with 15 failures ejects
// at its end (a judgement of all 150 calls would see 10%).
func TestBlocksAreJudgedAlone(t *testing.T) {
	fail := balancer.DoneInfo{Err: status.Error(codes.Internal, "x")}
	ok := balancer.DoneInfo{BytesSent: true, BytesReceived: true}
	in, _ := testInstance()
	b := in.b
	b.cfg = &Config{}
	*b.cfg = b.cfg.withDefaults()
	b.instances[in.name] = in
	b.count = 10
	for range 100 {
		in.record(ok)
	}
	for i := range 50 {
		if in.out.Load() {
			t.Fatalf("ejected after %d calls of the failing block, want at its end (50)", i)
		}
		if i%10 < 3 {
			in.record(fail)
		} else {
			in.record(ok)
		}
	}
	if !in.out.Load() {
		t.Error("a block of 50 calls with 15 failures after 100 good ones did not eject")
	}
}

func TestOrdinal(t *testing.T) {
	for n, want := range map[int]string{1: "1st", 2: "2nd", 3: "3rd", 4: "4th", 11: "11th", 12: "12th", 13: "13th", 21: "21st", 22: "22nd"} {
		if got := ordinal(n); got != want {
			t.Errorf("ordinal(%d) = %q, want %q", n, got, want)
		}
	}
}

// BenchmarkPick is the cost lb_outlier adds to a pick and its Done, over a
// child picker that costs nothing.
func BenchmarkPick(b *testing.B) {
	sent := balancer.DoneInfo{BytesSent: true, BytesReceived: true}
	_, sc := testInstance()
	for _, tc := range []struct {
		name string
		p    balancer.Picker
	}{
		{"child", fixedPicker{sc: sc.SubConn}},
		{"outlier", &picker{child: fixedPicker{sc: sc}}},
		{"outlier_chained", &picker{child: fixedPicker{sc: sc, done: func(balancer.DoneInfo) {}}}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					res, _ := tc.p.Pick(balancer.PickInfo{})
					if res.Done != nil {
						res.Done(sent)
					}
				}
			})
		})
	}
}

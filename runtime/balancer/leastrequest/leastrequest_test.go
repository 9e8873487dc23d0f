package leastrequest

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/balancer"
)

type fixedPicker struct{}

func (fixedPicker) Pick(balancer.PickInfo) (balancer.PickResult, error) {
	return balancer.PickResult{}, nil
}

func newTestPicker(n, choices int) *picker {
	children := make([]child, n)
	for i := range children {
		st := &counter{}
		st.Init()
		children[i] = child{picker: fixedPicker{}, st: st}
	}
	return &picker{children: children, choices: choices}
}

// TestFewestInFlightWins: with calls held open on one endpoint, new calls
// go to the others; with all of them as busy, they spread again.
func TestFewestInFlightWins(t *testing.T) {
	p := newTestPicker(3, 2)
	p.children[0].st.inflight.Store(100)
	counts := map[*counter]int{}
	for range 3000 {
		res, err := p.Pick(balancer.PickInfo{})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range p.children {
			if c.st.inflight.Load() > 0 && c.st != p.children[0].st {
				counts[c.st]++
			}
		}
		res.Done(balancer.DoneInfo{})
	}
	if n := p.children[0].st.inflight.Load(); n != 100 {
		t.Fatalf("the busy endpoint has %d calls in flight, want the 100 held: Done must give back only its own", n)
	}
	// Two distinct endpoints are compared: the busy one never wins.
	if busy := 3000 - counts[p.children[1].st] - counts[p.children[2].st]; busy != 0 {
		t.Errorf("the endpoint with 100 calls in flight got %d of 3000 new calls, want none", busy)
	}
}

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct {
		js      string
		want    uint32
		wantErr string
	}{
		{``, 2, ""},
		{`{}`, 2, ""},
		{`{"choiceCount":5}`, 5, ""},
		{`{"choiceCount":1}`, 0, "not in 2-10"},
		{`{"choiceCount":11}`, 0, "not in 2-10"},
		{`{"choiceCount":"two"}`, 0, "cannot unmarshal"},
	} {
		cfg, err := ParseConfig([]byte(tc.js))
		switch {
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("ParseConfig(%s) = %v, want an error containing %q", tc.js, err, tc.wantErr)
		case tc.wantErr == "" && (err != nil || cfg.ChoiceCount != tc.want):
			t.Errorf("ParseConfig(%s) = %+v, %v; want choiceCount %d", tc.js, cfg, err, tc.want)
		}
	}
}

func TestPickAllocatesNothing(t *testing.T) {
	p := newTestPicker(10, 2)
	if n := testing.AllocsPerRun(1000, func() {
		res, _ := p.Pick(balancer.PickInfo{})
		res.Done(balancer.DoneInfo{})
	}); n != 0 {
		t.Errorf("Pick+Done allocates %v times, want 0", n)
	}
}

// BenchmarkPick is one pick and its Done among 3, 10 and 100 endpoints.
func BenchmarkPick(b *testing.B) {
	for _, n := range []int{3, 10, 100} {
		p := newTestPicker(n, 2)
		b.Run(fmt.Sprintf("endpoints=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					res, _ := p.Pick(balancer.PickInfo{})
					res.Done(balancer.DoneInfo{})
				}
			})
		})
	}
}

// TestMoreChoicesAreDistinct: with choice_count 3 of 3 endpoints, the one
// with the most calls in flight is never picked.
func TestMoreChoicesAreDistinct(t *testing.T) {
	p := newTestPicker(3, 3)
	p.children[0].st.inflight.Store(1)
	p.children[1].st.inflight.Store(2)
	for range 1000 {
		res, _ := p.Pick(balancer.PickInfo{})
		if p.children[2].st.inflight.Load() != 1 {
			t.Fatal("a pick among all 3 endpoints did not take the idle one")
		}
		res.Done(balancer.DoneInfo{})
	}
}

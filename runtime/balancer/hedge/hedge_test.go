package hedge

import (
	"context"
	"errors"
	"testing"

	"google.golang.org/grpc/balancer"
)

type fakeSC struct {
	balancer.SubConn
	name string
}

// rotation picks its SubConns in turn, as round robin does.
type rotation struct {
	scs  []balancer.SubConn
	next int
}

func (p *rotation) Pick(balancer.PickInfo) (balancer.PickResult, error) {
	sc := p.scs[p.next%len(p.scs)]
	p.next++
	return balancer.PickResult{SubConn: sc}, nil
}

// newTestPicker returns a picker over a rotation of n SubConns, whose
// addresses the balancer knows.
func newTestPicker(n int) (*picker, *rotation) {
	b := &hedgeBalancer{}
	r := &rotation{}
	for i := range n {
		sc := &fakeSC{name: string(rune('a' + i))}
		b.addrs.Store(sc, "10.0.0."+string(rune('1'+i))+":443")
		r.scs = append(r.scs, sc)
	}
	return newPicker(r, b), r
}

func pick(t *testing.T, p *picker, ctx context.Context) (string, error) {
	t.Helper()
	res, err := p.Pick(balancer.PickInfo{FullMethodName: "/s/M", Ctx: ctx})
	if err != nil {
		return "", err
	}
	return res.SubConn.(*fakeSC).name, nil
}

// TestRepickOfTheSameAttempt: grpc-go picks again for the same attempt
// when the connection it got was not ready after all, or for a transparent
// retry of a stream the server never saw (one that raced a GOAWAY, as a
// graceful stop sends). Such a pick is the attempt's own: with one
// instance it goes back there, where an unhedged call would, instead of
// failing the call's first attempt as a hedge that finds no instance.
func TestRepickOfTheSameAttempt(t *testing.T) {
	p, _ := newTestPicker(1)
	a := &Attempts{}
	first := WithAttempt(context.Background(), a, 1)
	for i := range 3 {
		if got, err := pick(t, p, first); err != nil || got != "a" {
			t.Fatalf("pick %d of attempt 1 = %q, %v; want a", i+1, got, err)
		}
	}
	if _, err := pick(t, p, WithAttempt(context.Background(), a, 2)); !errors.Is(err, errTried) {
		t.Errorf("hedge with the only instance held by attempt 1: err %v, want errTried", err)
	}
	if got := a.Used(); len(got) != 1 || got[0] != "10.0.0.1:443" {
		t.Errorf("Used() = %v, want [10.0.0.1:443]", got)
	}
}

// TestHedgesGoElsewhere: three instances; attempts 2 and 3 of a call each
// get an instance no other attempt holds, a re-pick of attempt 1 keeps
// its own, and attempt 4 finds none.
func TestHedgesGoElsewhere(t *testing.T) {
	p, _ := newTestPicker(3)
	a := &Attempts{}
	seen := map[string]int{}
	for n := 1; n <= 3; n++ {
		got, err := pick(t, p, WithAttempt(context.Background(), a, n))
		if err != nil {
			t.Fatalf("attempt %d: %v", n, err)
		}
		seen[got]++
	}
	if len(seen) != 3 {
		t.Errorf("3 attempts went to %v, want 3 instances", seen)
	}
	if _, err := pick(t, p, WithAttempt(context.Background(), a, 1)); err != nil {
		t.Errorf("re-pick of attempt 1: %v", err)
	}
	if _, err := pick(t, p, WithAttempt(context.Background(), a, 4)); !errors.Is(err, errTried) {
		t.Errorf("attempt 4 of 3 instances: err %v, want errTried", err)
	}
}

// TestPlainCallsPassThrough: a call without Attempts is the child's pick,
// once.
func TestPlainCallsPassThrough(t *testing.T) {
	p, r := newTestPicker(2)
	for i := range 4 {
		if _, err := pick(t, p, context.Background()); err != nil {
			t.Fatal(err)
		}
		if r.next != i+1 {
			t.Fatalf("after %d plain picks the child picked %d times", i+1, r.next)
		}
	}
}

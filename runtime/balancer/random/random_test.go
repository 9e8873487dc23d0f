package random

import (
	"testing"

	"google.golang.org/grpc/balancer"
)

type fixedPicker struct{ n int }

func (p fixedPicker) Pick(balancer.PickInfo) (balancer.PickResult, error) {
	return balancer.PickResult{}, pickedErr(p.n)
}

// pickedErr carries which child was picked out of Pick.
type pickedErr int

func (e pickedErr) Error() string { return "picked" }

func TestPickerIsUniform(t *testing.T) {
	const children, picks = 4, 40000
	p := &picker{children: []balancer.Picker{fixedPicker{0}, fixedPicker{1}, fixedPicker{2}, fixedPicker{3}}}
	counts := make([]int, children)
	for range picks {
		_, err := p.Pick(balancer.PickInfo{})
		counts[int(err.(pickedErr))]++
	}
	// Each child expects 10000, with a standard deviation of about 87:
	// ±600 is about 7 sigma.
	for i, c := range counts {
		if c < picks/children-600 || c > picks/children+600 {
			t.Errorf("child %d picked %d of %d times, want about %d (all: %v)", i, c, picks, picks/children, counts)
		}
	}
}

func TestRegistered(t *testing.T) {
	if balancer.Get(Name) == nil {
		t.Fatalf("balancer %q is not registered", Name)
	}
}

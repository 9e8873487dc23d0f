package discovery

import (
	"errors"
	"testing"
)

func TestRegistrationStatus(t *testing.T) {
	var s RegistrationStatus
	if !errors.Is(s.Status(), ErrNotRegistered) {
		t.Errorf("zero Status() = %v, want ErrNotRegistered", s.Status())
	}
	changed := s.StatusChanged()
	if !s.SetStatus(nil) || s.Status() != nil {
		t.Fatalf("SetStatus(nil) did not register: %v", s.Status())
	}
	select {
	case <-changed:
	default:
		t.Error("StatusChanged not closed by registering")
	}
	if s.SetStatus(nil) {
		t.Error("SetStatus(nil) twice reported a change")
	}
	changed = s.StatusChanged()
	down := errors.New("down")
	if !s.SetStatus(down) || !errors.Is(s.Status(), down) {
		t.Errorf("SetStatus(down) = %v", s.Status())
	}
	select {
	case <-changed:
	default:
		t.Error("StatusChanged not closed by losing the registration")
	}
	if s.SetStatus(errors.New("still down")) {
		t.Error("one error after another reported a change")
	}
}

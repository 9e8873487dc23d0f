package discovery

import (
	"errors"
	"sync"
)

// RegistrationCounter is implemented by Registrars that count how many
// times they put the instance in the registry.
type RegistrationCounter interface {
	// Registrations returns how many times the instance became
	// registered: 1 after the first registration, more when the registry
	// lost it (a lease expired, an agent restarted) and it was put back.
	Registrations() uint64
}

// RegistrationStatus tracks whether a Registrar's instance is registered;
// backends embed it. The zero value is "not registered yet".
type RegistrationStatus struct {
	mu            sync.Mutex
	started       bool          // guarded by mu; false until the first SetStatus
	err           error         // guarded by mu; nil while registered
	changed       chan struct{} // guarded by mu; closed and replaced on a change
	registrations uint64        // guarded by mu; changes to registered
}

// Registrations returns how many times the status became registered.
func (s *RegistrationStatus) Registrations() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.registrations
}

// ErrNotRegistered is the status of a Registrar before its first attempt.
var ErrNotRegistered = errors.New("not registered yet")

// Status returns nil while the instance is registered, else why not.
func (s *RegistrationStatus) Status() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		return ErrNotRegistered
	}
	return s.err
}

// StatusChanged returns a channel that is closed when the status next
// changes between registered and not.
func (s *RegistrationStatus) StatusChanged() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.changed == nil {
		s.changed = make(chan struct{})
	}
	return s.changed
}

// SetStatus records err (nil: registered) and reports whether that changed
// the status between registered and not, for the caller to log.
func (s *RegistrationStatus) SetStatus(err error) (changed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	was := s.err == nil && s.started
	s.started, s.err = true, err
	if was == (err == nil) {
		return false
	}
	if err == nil {
		s.registrations++
	}
	if s.changed != nil {
		close(s.changed)
		s.changed = nil
	}
	return true
}

package discovery

import (
	"google.golang.org/grpc/resolver"
)

// instanceSet is the current instances of one watch, kept so that a change
// costs in proportion to its size: Put and Delete touch one entry and its
// address group; only building the published list walks the set.
//
// Instances keep the order the source gave them (Consul near, SRV
// priority); a new ID goes last. Two IDs with one address (a stale key next
// to a new one) publish the address once, with the instance of the lowest
// ID, so the winner does not change from one listing to the next.
type instanceSet struct {
	byID   map[string]*entry
	byAddr map[string][]*entry // every entry of an address; [0] is the visible one
	order  []*entry            // in the source's order; nil where an entry was deleted
	holes  int                 // nil entries in order
}

type entry struct {
	id    string
	addr  string
	md    Metadata
	ep    resolver.Endpoint
	pos   int  // index in order
	shown bool // the visible entry of its address: byAddr[addr][0]
}

func newInstanceSet() *instanceSet {
	return &instanceSet{byID: map[string]*entry{}, byAddr: map[string][]*entry{}}
}

// len returns the number of visible instances (distinct addresses).
func (s *instanceSet) len() int { return len(s.byAddr) }

// put adds or replaces the instance of inst.ID, whose address is valid and
// canonical; it reports whether the published list changes.
func (s *instanceSet) put(inst Instance) bool {
	if old, ok := s.byID[inst.ID]; ok {
		if old.addr == inst.Address && old.md.Equal(inst.Metadata) {
			return false
		}
		changed := s.unlink(old)
		e := &entry{id: inst.ID, addr: inst.Address, md: inst.Metadata, ep: Endpoint(inst.Address, inst.Metadata), pos: old.pos}
		s.order[e.pos] = e
		s.byID[e.id] = e
		return s.link(e) || changed
	}
	e := &entry{id: inst.ID, addr: inst.Address, md: inst.Metadata, ep: Endpoint(inst.Address, inst.Metadata), pos: len(s.order)}
	s.order = append(s.order, e)
	s.byID[e.id] = e
	return s.link(e)
}

// delete removes the instance of id; it reports whether the published list
// changes.
func (s *instanceSet) delete(id string) bool {
	e, ok := s.byID[id]
	if !ok {
		return false
	}
	delete(s.byID, id)
	s.order[e.pos] = nil
	s.holes++
	changed := s.unlink(e)
	if s.holes > 64 && s.holes > len(s.order)/2 {
		s.compact()
	}
	return changed
}

// link adds e to its address group; it reports whether e is visible.
func (s *instanceSet) link(e *entry) bool {
	g := s.byAddr[e.addr]
	if len(g) == 0 || e.id < g[0].id {
		if len(g) > 0 {
			g[0].shown = false
		}
		e.shown = true
		s.byAddr[e.addr] = append([]*entry{e}, g...)
		return true
	}
	s.byAddr[e.addr] = append(g, e)
	return false
}

// unlink removes e from its address group; it reports whether the visible
// instance of the address changed.
func (s *instanceSet) unlink(e *entry) bool {
	g := s.byAddr[e.addr]
	i := 0
	for i < len(g) && g[i] != e {
		i++
	}
	if i == len(g) {
		return false
	}
	e.shown = false
	g = append(g[:i:i], g[i+1:]...)
	if len(g) == 0 {
		delete(s.byAddr, e.addr)
		return true
	}
	if i == 0 {
		// The lowest ID left becomes the visible one.
		low := 0
		for j := range g {
			if g[j].id < g[low].id {
				low = j
			}
		}
		g[0], g[low] = g[low], g[0]
		g[0].shown = true
	}
	s.byAddr[e.addr] = g
	return i == 0
}

func (s *instanceSet) compact() {
	out := s.order[:0]
	for _, e := range s.order {
		if e != nil {
			e.pos = len(out)
			out = append(out, e)
		}
	}
	clear(s.order[len(out):])
	s.order, s.holes = out, 0
}

// endpoints returns the visible instances in order.
func (s *instanceSet) endpoints() []resolver.Endpoint {
	eps := make([]resolver.Endpoint, 0, len(s.byAddr))
	for _, e := range s.order {
		if e != nil && e.shown {
			eps = append(eps, e.ep)
		}
	}
	return eps
}

// stateOf returns the resolver.State of eps, with both Endpoints and the flat
// Addresses list filled in (some balancers still read only Addresses).
func stateOf(eps []resolver.Endpoint) resolver.State {
	addrs := make([]resolver.Address, 0, len(eps))
	for _, ep := range eps {
		for _, a := range ep.Addresses {
			a.BalancerAttributes = ep.Attributes
			addrs = append(addrs, a)
		}
	}
	return resolver.State{Endpoints: eps, Addresses: addrs}
}

// equalEndpoints reports whether a and b are the same list with the same
// attributes.
func equalEndpoints(a, b []resolver.Endpoint) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if len(x.Addresses) != len(y.Addresses) || !x.Attributes.Equal(y.Attributes) {
			return false
		}
		for j := range x.Addresses {
			if !x.Addresses[j].Equal(y.Addresses[j]) {
				return false
			}
		}
	}
	return true
}

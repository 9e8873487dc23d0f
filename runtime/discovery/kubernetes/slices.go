package kubernetes

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
)

// endpoint is one endpoint of a slice, as the resolver reads it.
type endpoint struct {
	id   string // <slice>/<address>
	addr string // host:port
	md   discovery.Metadata
	// ready: it gets calls. fallback: it is serving and terminating, and
	// gets calls only while no endpoint of the Service is ready.
	ready, fallback bool
}

// sliceSet is the merged view of a Service's EndpointSlices. Work per event
// is in proportion to the slice that changed: only when the Service's
// last ready endpoint leaves (or the first comes back) does every slice's
// serving-and-terminating endpoints go in (or out).
type sliceSet struct {
	port string // Config.Port

	bySlice map[string][]endpoint // slice name -> its endpoints, dropped ones with addr ""
	ready   int                   // ready endpoints over every slice
	// fallback: no endpoint is ready, the serving and terminating ones are
	// shown.
	fallback bool
}

func newSliceSet(port string) *sliceSet {
	return &sliceSet{port: port, bySlice: map[string][]endpoint{}, fallback: true}
}

// shown reports whether e gets calls in the current mode.
func (s *sliceSet) shown(e endpoint) bool {
	if e.addr == "" {
		return false
	}
	if s.fallback {
		return e.fallback
	}
	return e.ready
}

// send tells u about e: put when shown, else delete.
func (s *sliceSet) send(e endpoint, u discovery.Updates) {
	if s.shown(e) {
		u.Put(discovery.Instance{ID: e.id, Address: e.addr, Metadata: e.md})
	} else if e.addr != "" {
		u.Delete(e.id)
	}
}

// reset replaces every slice by items and sends the whole set.
func (s *sliceSet) reset(items []discoveryv1.EndpointSlice, u discovery.Updates) {
	s.bySlice = map[string][]endpoint{}
	s.ready = 0
	var dropped []discovery.Dropped
	for i := range items {
		eps, d := s.read(&items[i])
		dropped = append(dropped, d...)
		s.bySlice[items[i].Name] = eps
		s.ready += countReady(eps)
	}
	s.fallback = s.ready == 0
	var insts []discovery.Instance
	for _, name := range slices.Sorted(maps.Keys(s.bySlice)) {
		for _, e := range s.bySlice[name] {
			if s.shown(e) {
				insts = append(insts, discovery.Instance{ID: e.id, Address: e.addr, Metadata: e.md})
			}
		}
	}
	u.Reset(insts, dropped)
}

// update applies a slice that was added or changed.
func (s *sliceSet) update(es *discoveryv1.EndpointSlice, u discovery.Updates) {
	eps, dropped := s.read(es)
	s.replace(es.Name, eps, u)
	for _, d := range dropped {
		u.Drop(d)
	}
}

// remove applies a slice that was deleted.
func (s *sliceSet) remove(name string, u discovery.Updates) { s.replace(name, nil, u) }

func (s *sliceSet) replace(name string, eps []endpoint, u discovery.Updates) {
	old := s.bySlice[name]
	if eps == nil {
		delete(s.bySlice, name)
	} else {
		s.bySlice[name] = eps
	}
	s.ready += countReady(eps) - countReady(old)
	if len(old) > 0 {
		keep := make(map[string]struct{}, len(eps))
		for _, e := range eps {
			keep[e.id] = struct{}{}
		}
		for _, e := range old {
			if _, ok := keep[e.id]; !ok {
				u.Delete(e.id)
			}
		}
	}
	if fallback := s.ready == 0; fallback != s.fallback {
		// The mode changed: every slice's endpoints in or out.
		s.fallback = fallback
		for n, others := range s.bySlice {
			if n != name {
				for _, e := range others {
					s.send(e, u)
				}
			}
		}
	}
	for _, e := range eps {
		s.send(e, u)
	}
}

func countReady(eps []endpoint) int {
	n := 0
	for _, e := range eps {
		if e.ready && e.addr != "" {
			n++
		}
	}
	return n
}

// count returns how many endpoints the slices hold and how many are ready.
func (s *sliceSet) count() (all, ready int) {
	for _, eps := range s.bySlice {
		all += len(eps)
	}
	return all, s.ready
}

// read returns the endpoints of a slice, and those it drops with their
// reasons (an entry with an empty addr stands for each, so that it is
// deleted once it goes).
func (s *sliceSet) read(es *discoveryv1.EndpointSlice) ([]endpoint, []discovery.Dropped) {
	eps := make([]endpoint, 0, len(es.Endpoints))
	var dropped []discovery.Dropped
	drop := func(id string, err error) {
		dropped = append(dropped, discovery.Dropped{ID: id, Reason: err})
		eps = append(eps, endpoint{id: id})
	}
	port, portErr := s.portOf(es)
	for i := range es.Endpoints {
		ep := &es.Endpoints[i]
		id := es.Name + "/" + strconv.Itoa(i)
		if len(ep.Addresses) > 0 {
			id = es.Name + "/" + ep.Addresses[0]
		}
		switch {
		case len(ep.Addresses) == 0:
			drop(id, errors.New("endpoint without an address"))
			continue
		case es.AddressType != discoveryv1.AddressTypeIPv4 && es.AddressType != discoveryv1.AddressTypeIPv6:
			drop(id, fmt.Errorf("address type %s: only IPv4 and IPv6 slices are read", es.AddressType))
			continue
		case portErr != nil:
			drop(id, portErr)
			continue
		}
		// Kubernetes says consumers may use the first address alone.
		ip := net.ParseIP(ep.Addresses[0])
		if ip == nil || (ip.To4() == nil) != (es.AddressType == discoveryv1.AddressTypeIPv6) {
			drop(id, fmt.Errorf("%q is not an %s address", ep.Addresses[0], es.AddressType))
			continue
		}
		c := ep.Conditions
		ready := c.Ready == nil || *c.Ready
		serving := c.Serving == nil || *c.Serving
		terminating := c.Terminating != nil && *c.Terminating
		e := endpoint{id: id, addr: net.JoinHostPort(ip.String(), strconv.Itoa(int(port))), ready: ready, fallback: serving && terminating}
		if ep.Zone != nil {
			e.md.Zone = *ep.Zone
		}
		if ep.NodeName != nil && *ep.NodeName != "" {
			e.md.Custom = map[string]string{NodeKey: *ep.NodeName}
		}
		eps = append(eps, e)
	}
	return eps, dropped
}

// portOf returns the port of s.port in a slice: by name, by number (the
// pods' port), or the slice's only port.
func (s *sliceSet) portOf(es *discoveryv1.EndpointSlice) (int32, error) {
	tcp := func(p discoveryv1.EndpointPort) bool { return p.Protocol == nil || *p.Protocol == corev1.ProtocolTCP }
	name := func(p discoveryv1.EndpointPort) string {
		if p.Name == nil {
			return ""
		}
		return *p.Name
	}
	if n, err := strconv.Atoi(s.port); err == nil {
		if len(es.Ports) == 0 {
			return int32(n), nil // a headless Service without ports
		}
		for _, p := range es.Ports {
			if p.Port != nil && int(*p.Port) == n && tcp(p) {
				return *p.Port, nil
			}
		}
		return 0, fmt.Errorf("slice %s has no TCP port %d (it has %s); a number is the pods' port (the Service's targetPort), not the Service's port", es.Name, n, portList(es.Ports))
	}
	var found []discoveryv1.EndpointPort
	for _, p := range es.Ports {
		if (s.port == "" || name(p) == s.port) && tcp(p) && p.Port != nil {
			found = append(found, p)
		}
	}
	switch {
	case len(found) == 1:
		return *found[0].Port, nil
	case s.port == "" && len(found) > 1:
		return 0, fmt.Errorf("slice %s has several ports (%s): name one", es.Name, portList(es.Ports))
	case s.port == "":
		return 0, fmt.Errorf("slice %s has no TCP port", es.Name)
	}
	return 0, fmt.Errorf("slice %s has no TCP port named %q (it has %s)", es.Name, s.port, portList(es.Ports))
}

func portList(ps []discoveryv1.EndpointPort) string {
	if len(ps) == 0 {
		return "none"
	}
	s := ""
	for i, p := range ps {
		if i > 0 {
			s += ", "
		}
		if p.Port != nil {
			s += strconv.Itoa(int(*p.Port))
		}
		if p.Name != nil && *p.Name != "" {
			s += " (" + *p.Name + ")"
		}
		if p.Protocol != nil && *p.Protocol != corev1.ProtocolTCP {
			s += "/" + string(*p.Protocol)
		}
	}
	return s
}

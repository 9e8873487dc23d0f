package discovery

import (
	"strings"
	"sync"
)

// Key identifies one watch: two channels that resolve the same service in
// the same registry, with the same filters and failure policy, share it.
type Key struct {
	// Scheme is the backend's resolver scheme.
	Scheme string
	// Registry is the registry's address (etcd endpoints, Consul agent, DNS
	// server) with anything that changes the connection (TLS settings),
	// never a secret.
	Registry string
	// Service is the service's name, key prefix or DNS name.
	Service string
	// Filters is everything else that changes the answer (Consul tags,
	// datacenter, ...).
	Filters string
	// Options tells builders with options of their own (tests' fakes)
	// apart from the default one; empty for the default builder.
	Options string
	// Policy is the failure policy, as FailurePolicy.String.
	Policy string
}

func (k Key) String() string {
	s := k.Scheme + "://" + k.Registry + "/" + strings.TrimPrefix(k.Service, "/")
	if k.Filters != "" {
		s += "?" + k.Filters
	}
	return s
}

// IDs numbers distinct values of K (TLS settings, credentials), 0 for K's
// zero value, so that a Key can tell watches with other credentials apart
// without showing them. The zero IDs is ready to use.
type IDs[K comparable] struct {
	mu sync.Mutex
	m  map[K]int
}

// Of returns k's number.
func (n *IDs[K]) Of(k K) int {
	var zero K
	if k == zero {
		return 0
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	id, ok := n.m[k]
	if !ok {
		if n.m == nil {
			n.m = map[K]int{}
		}
		id = len(n.m) + 1
		n.m[k] = id
	}
	return id
}

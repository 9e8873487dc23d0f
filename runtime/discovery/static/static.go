// Package static is discovery from a fixed address list, for local
// development and tests.
//
// Importing it registers the "static" resolver scheme:
//
//	import _ "github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/static"
//
//	conn, err := grpc.NewClient("static:///10.0.0.1:50051,10.0.0.2:50051",
//		grpc.WithTransportCredentials(insecure.NewCredentials()))
package static

import (
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/resolver"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
)

// Scheme is the resolver scheme of static targets.
const Scheme = "static"

func init() {
	resolver.Register(builder{})
}

// Config is the static backend of (lb.service).discovery.
type Config struct {
	// Addresses are the "host:port" addresses of the instances.
	Addresses []string
}

// Target returns "static:///<addresses>". A non-empty registry is a
// comma-separated address list that replaces c.Addresses.
func (c Config) Target(_, registry string) (string, error) {
	list := strings.Join(c.Addresses, ",")
	if registry != "" {
		list = registry
	}
	if _, err := parseList(list); err != nil {
		return "", err
	}
	return Scheme + ":///" + list, nil
}

// parseList parses a comma-separated address list; every address must be
// valid and there must be at least one.
func parseList(list string) ([]resolver.Endpoint, error) {
	if list == "" {
		return nil, errors.New("static: no addresses")
	}
	var eps []resolver.Endpoint
	for i, s := range strings.Split(list, ",") {
		addr, err := discovery.ParseAddress(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("static: address %d: %w", i+1, err)
		}
		eps = append(eps, discovery.Endpoint(addr, discovery.Metadata{}))
	}
	return eps, nil
}

type builder struct{}

func (builder) Scheme() string { return Scheme }

// Build publishes the target's addresses once. A bad address fails Build
// with an error that names it.
func (builder) Build(t resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	if t.URL.Host != "" {
		return nil, fmt.Errorf("static: target %q: authority %q not supported, use static:///host:port,...", t.URL.String(), t.URL.Host)
	}
	eps, err := parseList(t.Endpoint())
	if err != nil {
		return nil, err
	}
	// An error here is the balancer rejecting the list; it asks for a new
	// one with ResolveNow, and a static list has no other to give.
	_ = cc.UpdateState(discovery.State(eps))
	return nopResolver{}, nil
}

type nopResolver struct{}

func (nopResolver) ResolveNow(resolver.ResolveNowOptions) {}
func (nopResolver) Close()                                {}

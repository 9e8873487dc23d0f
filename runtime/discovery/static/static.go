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
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"google.golang.org/grpc/resolver"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
)

// Scheme is the resolver scheme of static targets.
const Scheme = "static"

func init() {
	resolver.Register(NewBuilder())
}

// Config is the static backend of (lb.service).discovery.
type Config struct {
	// Addresses are the "host:port" addresses of the instances.
	Addresses []string
}

// Target returns "static:///<addresses>". A non-empty registry is a
// comma-separated address list that replaces c.Addresses.
func (c Config) Target(_, registry string) (string, error) {
	list := c.list(registry)
	if _, err := parseList(list); err != nil {
		return "", err
	}
	return Scheme + ":///" + list, nil
}

// Spec returns the watch of c's addresses.
func (c Config) Spec(_, registry string) (discovery.Spec, error) {
	return spec(c.list(registry))
}

func (c Config) list(registry string) string {
	if registry != "" {
		return registry
	}
	return strings.Join(c.Addresses, ",")
}

// parseList parses a comma-separated address list; every address must be
// valid and there must be at least one.
func parseList(list string) ([]discovery.Instance, error) {
	if list == "" {
		return nil, errors.New("static: no addresses")
	}
	var insts []discovery.Instance
	for i, s := range strings.Split(list, ",") {
		addr, err := discovery.ParseAddress(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("static: address %d: %w", i+1, err)
		}
		insts = append(insts, discovery.Instance{ID: addr, Address: addr})
	}
	return insts, nil
}

func spec(list string) (discovery.Spec, error) {
	insts, err := parseList(list)
	if err != nil {
		return discovery.Spec{}, err
	}
	return discovery.Spec{
		Key: discovery.Key{Scheme: Scheme, Service: list},
		New: func() (discovery.Source, error) { return source(insts), nil },
	}, nil
}

// NewBuilder returns a Builder of the static scheme, for
// grpc.WithResolvers. The package registers one when imported.
func NewBuilder() resolver.Builder {
	return discovery.NewBuilder(Scheme, func(u *url.URL) (discovery.Spec, error) {
		shown := discovery.Redact(u)
		switch {
		case u.User != nil:
			return discovery.Spec{}, fmt.Errorf("static: target %q: user info is not allowed in a target", shown)
		case u.Host != "":
			return discovery.Spec{}, fmt.Errorf("static: target %q: authority %q not supported, use static:///host:port,...", shown, u.Host)
		case u.RawQuery != "":
			return discovery.Spec{}, fmt.Errorf("static: target %q: query parameters are not supported (only onfailure, maxstale, fallback)", shown)
		}
		return spec(strings.TrimPrefix(u.Path, "/"))
	})
}

// source publishes its instances once and holds them.
type source []discovery.Instance

func (s source) Watch(ctx context.Context, u discovery.Updates) error {
	u.Reset(s, nil)
	u.Flush()
	<-ctx.Done()
	return nil
}

// Package etcd is discovery through etcd: a resolver that lists and then
// watches a key prefix, and a registrar that keeps one key per server alive
// with a lease.
//
// Importing it registers the "etcd" resolver scheme:
//
//	import _ "github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/etcd"
//
//	conn, err := grpc.NewClient("etcd://127.0.0.1:2379/services/greeter", ...)
//
// Target: etcd://[endpoint[,endpoint...]]/<key prefix>. The instances are the
// keys under "<key prefix>/". The endpoints default to 127.0.0.1:2379.
// Credentials never go in the target: set ETCD_USERNAME and ETCD_PASSWORD.
//
// Values are read in both formats in use: etcd's naming/endpoints JSON
// ({"Addr":"10.0.0.1:50051","Metadata":{"weight":3}}), which etcd's own
// resolver reads too, and a plain "host:port" as go-kit's sd/etcdv3
// registrar writes it. An invalid value (bad JSON, bad address, over
// MaxValueSize) is dropped with a logged reason; the valid ones are served.
//
// The resolver never stops updating: after a watch error (compaction, a lost
// leader, a closed watch, an expired auth token) it lists again and watches
// again under jittered exponential backoff, and it re-reads the whole prefix
// every ResyncInterval in case a watch event was lost. Every etcd request
// has a deadline (RequestTimeout). A registry error is reported with
// ReportError and the last good state is kept.
package etcd

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/grpclog"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/internal/retry"
)

// Scheme is the resolver scheme of etcd targets.
const Scheme = "etcd"

// Defaults.
const (
	// DefaultEndpoint is the etcd endpoint used when none is given.
	DefaultEndpoint = "127.0.0.1:2379"
	// DefaultPrefix is the key prefix of the services.
	DefaultPrefix = "/services"
	// DefaultTTL is the registrar's lease TTL.
	DefaultTTL = 10 * time.Second
	// MinTTL is the shortest lease TTL a registrar accepts.
	MinTTL = 2 * time.Second
	// RequestTimeout is the deadline of every etcd request.
	RequestTimeout = 5 * time.Second
	// ResyncInterval is how often the resolver re-reads the whole prefix.
	ResyncInterval = 5 * time.Minute
	// MaxValueSize is the largest value the resolver accepts.
	MaxValueSize = 4096
)

var logger = grpclog.Component("etcd")

// Config is the etcd backend of (lb.service).discovery.
type Config struct {
	// Endpoints are the etcd client endpoints, "host:port"; empty means
	// DefaultEndpoint.
	Endpoints []string
	// Prefix is the key prefix; a service's instances live under
	// "<Prefix>/<service>/". Empty means DefaultPrefix.
	Prefix string
	// TTL is the registrar's lease TTL; 0 means DefaultTTL. At least MinTTL.
	TTL time.Duration
	// PlainValue makes the registrar write "host:port" values (as go-kit's
	// sd/etcdv3 reads them) instead of etcd's naming/endpoints JSON.
	PlainValue bool
}

func (c Config) endpoints(registry string) []string {
	switch {
	case registry != "":
		return strings.Split(registry, ",")
	case len(c.Endpoints) > 0:
		return c.Endpoints
	default:
		return []string{DefaultEndpoint}
	}
}

// servicePrefix is the key prefix of service's instances, without the
// trailing '/'.
func (c Config) servicePrefix(service string) string {
	p := c.Prefix
	if p == "" {
		p = DefaultPrefix
	}
	return strings.TrimSuffix(p, "/") + "/" + service
}

// Target returns "etcd://<endpoints>/<prefix>/<service>". A non-empty
// registry is a comma-separated endpoint list that replaces c.Endpoints.
func (c Config) Target(service, registry string) (string, error) {
	u := url.URL{Scheme: Scheme, Host: strings.Join(c.endpoints(registry), ","), Path: c.servicePrefix(service)}
	if _, err := parseTarget(&u); err != nil {
		return "", err
	}
	return u.String(), nil
}

type target struct {
	endpoints []string
	prefix    string // without the trailing '/'
	sec       security
}

// security is how a client authenticates to etcd and secures its
// connection. It is comparable: clients with equal endpoints and security
// are shared.
type security struct{}

// securityFromEnv returns the security of targets that carry none of
// their own.
func securityFromEnv() security { return security{} }

// target returns the resolved target of service under c: the same value
// parseTarget returns for c.Target(service, registry).
func (c Config) target(service, registry string) (target, error) {
	u := url.URL{Scheme: Scheme, Host: strings.Join(c.endpoints(registry), ","), Path: c.servicePrefix(service)}
	return parseTarget(&u)
}

func parseTarget(u *url.URL) (target, error) {
	// Errors show the target without user info or query: either could
	// hold a secret.
	shown := u.Scheme + "://" + u.Host + u.Path
	bad := func(format string, a ...any) error {
		return fmt.Errorf("etcd: target %q: %s", shown, fmt.Sprintf(format, a...))
	}
	if u.User != nil {
		return target{}, bad("credentials are not allowed in a target: set ETCD_USERNAME and ETCD_PASSWORD")
	}
	if u.RawQuery != "" {
		return target{}, bad("query parameters are not supported")
	}
	t := target{endpoints: []string{DefaultEndpoint}, prefix: strings.TrimSuffix(u.Path, "/"), sec: securityFromEnv()}
	if u.Host != "" {
		t.endpoints = nil
		for _, ep := range strings.Split(u.Host, ",") {
			addr, err := discovery.ParseAddress(ep)
			if err != nil {
				return target{}, bad("endpoint: %v", err)
			}
			t.endpoints = append(t.endpoints, addr)
		}
	}
	if t.prefix == "" || t.prefix[0] != '/' {
		return target{}, bad("empty key prefix: want etcd://host:port/<prefix>")
	}
	return t, nil
}

// newClient returns an etcd client of endpoints. It does not wait for a
// connection, unless ETCD_USERNAME is set: then it fetches a token within
// RequestTimeout.
func newClient(ctx context.Context, endpoints []string, _ security) (*clientv3.Client, error) {
	c, err := clientv3.New(clientv3.Config{
		Context:              ctx,
		Endpoints:            endpoints,
		DialTimeout:          RequestTimeout,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
		DialOptions: []grpc.DialOption{
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			// Reconnect within a second of etcd coming back, not after
			// gRPC's default backoff of up to two minutes.
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           grpcbackoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
				MinConnectTimeout: 2 * time.Second,
			}),
		},
		Username: os.Getenv("ETCD_USERNAME"),
		Password: os.Getenv("ETCD_PASSWORD"),
		Logger:   zap.NewNop(),
	})
	if err != nil {
		// Errors of clientv3.New never carry the password.
		return nil, fmt.Errorf("etcd: client of %s: %w", strings.Join(endpoints, ","), err)
	}
	return c, nil
}

// withTimeout returns a context for one etcd request.
func withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, RequestTimeout)
}

// backoff is the wait before retry n+1: 100ms doubling to 10s, jittered.
func backoff(n int) time.Duration { return retry.Backoff(n, 100*time.Millisecond, 10*time.Second) }

// ErrValue is wrapped by the reasons a value is dropped.
var ErrValue = errors.New("bad value")

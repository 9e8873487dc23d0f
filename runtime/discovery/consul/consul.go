// Package consul is discovery through a Consul agent: a resolver that
// follows a service's healthy instances with blocking queries, and a
// registrar that registers a server with a gRPC health check (Consul calls
// the grpc.health.v1 service that lb.Register serves) and registers it again
// when the agent forgets it.
//
// Importing it registers the "consul" resolver scheme:
//
//	import _ "github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/consul"
//
//	conn, err := grpc.NewClient("consul://127.0.0.1:8500/helloworld", ...)
//
// Target: consul://[agent]/<service>[?tag=t1&tag=t2][&dc=dc1][&passing=false]
// [&near=_agent][&grace=30s][&failfast=true][&stale=false], plus the
// failure policy parameters every scheme takes (onfailure, maxstale,
// fallback: see package discovery). Settings not in the target come
// from Consul's own environment through api.DefaultConfig: CONSUL_HTTP_ADDR,
// CONSUL_HTTP_TOKEN, CONSUL_CACERT, CONSUL_HTTP_SSL, ... The ACL token is
// never put in a target, a log line or an error; a target with a token is
// refused.
//
// The resolver follows Consul's blocking-query rules: the index is reset to
// 0 when it goes backwards and kept at 1 or more, queries are rate limited
// (a lone change is never delayed), errors back off with jitter, and Close
// cancels the long poll. An empty answer that Consul filtered by ACLs is an
// error, not an empty list. When the agent cannot be reached, no instance
// passes, or every one is invalid, the failure policy of package discovery
// applies (by default the last set is kept and the channel is told why);
// grace is its maximum staleness and failfast its FailFast mode. Queries
// allow stale reads (any server answers) unless stale=false. Every channel
// of the process that resolves the same service with the same filters and
// token shares one blocking query.
package consul

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
	"google.golang.org/grpc/grpclog"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/internal/retry"
)

// Scheme is the resolver scheme of Consul targets.
const Scheme = "consul"

// Defaults.
const (
	// DefaultCheckInterval is the interval of the registered gRPC check.
	DefaultCheckInterval = 10 * time.Second
	// DefaultDeregisterCriticalAfter is how long Consul keeps an instance
	// whose check is critical before it deregisters it.
	DefaultDeregisterCriticalAfter = time.Minute
	// RequestTimeout is the deadline of every request but blocking queries.
	RequestTimeout = 5 * time.Second
	// WaitTime is how long a blocking query waits for a change.
	WaitTime = time.Minute
)

var logger = grpclog.Component("consul")

// Errors the resolver reports.
var (
	// ErrFilteredByACLs: Consul answered an empty list because the ACL
	// token may not read the service.
	ErrFilteredByACLs = errors.New("consul: the answer is empty because of ACLs: the token may not read this service")
	// ErrNoInstances: no instance passes its checks.
	// It is discovery.ErrNoInstances too.
	ErrNoInstances = discovery.NoInstancesError("consul: no instance passes its health checks")
)

// Config is the Consul backend of (lb.service).discovery.
type Config struct {
	// Address is the agent's HTTP address; empty means CONSUL_HTTP_ADDR or
	// 127.0.0.1:8500.
	Address string
	// Tags: only instances with all of them.
	Tags []string
	// Datacenter; empty means the agent's.
	Datacenter string
	// IncludeFailing includes instances whose checks do not pass.
	IncludeFailing bool
	// Near sorts by round-trip time from this node ("_agent").
	Near string
	// Grace is how long the last instances are kept when the agent cannot
	// be reached or no instance passes; then calls fail. 0 means for as
	// long as it takes (the failure policy's default). It is the failure
	// policy's maximum staleness, kept for compatibility.
	Grace time.Duration
	// FailFast makes calls fail at once when the agent cannot be reached or
	// no instance passes: the FailFast failure policy, kept for
	// compatibility.
	FailFast bool
	// Consistent makes the resolver's queries read from the leader; by
	// default they allow stale reads, which any server answers (Consul's
	// advice for discovery at scale).
	Consistent bool

	// CheckInterval is the interval of the registered gRPC health check;
	// 0 means DefaultCheckInterval. The check's timeout is the interval,
	// at least MinCheckTimeout and at most 5 s.
	CheckInterval time.Duration
	// DeregisterCriticalAfter is how long a critical instance stays
	// registered; 0 means DefaultDeregisterCriticalAfter.
	DeregisterCriticalAfter time.Duration
	// TTL, when set, adds a TTL check that the registrar passes every
	// TTL/3.
	TTL time.Duration

	// GRPCUseTLS makes the registered gRPC health check connect with TLS,
	// for a server that serves TLS. The agent verifies the server's
	// certificate with the system roots, unless it runs with
	// enable_agent_tls_for_checks = true: then with its own CA, its
	// tls.internal_rpc.ca_file (tls.defaults.ca_file, or ca_file before
	// Consul 1.12). The agent's settings are the agent's: a private CA
	// reaches the check only through them (or TLSSkipVerify).
	// Default false: the check uses plaintext.
	GRPCUseTLS bool
	// TLSServerName is the name the check verifies the server's
	// certificate for, as the SNI of its handshake. Empty means the host
	// of the instance's address, or, on an agent with
	// enable_agent_tls_for_checks, the agent's server_name or node name:
	// set it whenever the certificate is for a DNS name. Needs GRPCUseTLS.
	TLSServerName string
	// TLSSkipVerify makes the check accept any certificate: the
	// connection is encrypted but the server is not authenticated. For a
	// server whose certificate the agent cannot verify; prefer giving the
	// agent the CA. Needs GRPCUseTLS. Default false.
	TLSSkipVerify bool
}

// Target returns the consul target of c for service. A non-empty registry
// replaces c.Address.
func (c Config) Target(service, registry string) (string, error) {
	if _, err := c.target(service, registry); err != nil {
		return "", fmt.Errorf("consul: %w", err)
	}
	return c.url(service, registry).String(), nil
}

// url is the target of c for service.
func (c Config) url(service, registry string) *url.URL {
	addr := c.Address
	if registry != "" {
		addr = registry
	}
	q := url.Values{}
	for _, t := range c.Tags {
		q.Add("tag", t)
	}
	if c.Datacenter != "" {
		q.Set("dc", c.Datacenter)
	}
	if c.IncludeFailing {
		q.Set("passing", "false")
	}
	if c.Near != "" {
		q.Set("near", c.Near)
	}
	if c.Grace != 0 {
		q.Set("grace", c.Grace.String())
	}
	if c.FailFast {
		q.Set("failfast", "true")
	}
	if c.Consistent {
		q.Set("stale", "false")
	}
	return &url.URL{Scheme: Scheme, Host: addr, Path: "/" + service, RawQuery: q.Encode()}
}

// target is what a watch resolves: a service with its settings.
type target struct {
	Config  // Address is the agent; empty: from the environment
	service string
}

// target checks c's settings for service (at registry, when not empty):
// the one check of a Config, whether it comes from generated code, a
// hand-built value or a target URL.
func (c Config) target(service, registry string) (target, error) {
	if registry != "" {
		c.Address = registry
	}
	if c.Address != "" {
		if _, err := discovery.ParseAddress(c.Address); err != nil {
			return target{}, fmt.Errorf("agent address: %w", err)
		}
	}
	if service == "" {
		return target{}, errors.New("no service: want consul://host:port/<service>")
	}
	if err := discovery.CheckServiceName(service, false); err != nil {
		return target{}, err
	}
	for _, tag := range c.Tags {
		if tag == "" || strings.ContainsAny(tag, " \t\r\n") {
			return target{}, fmt.Errorf("tag %q: empty tag, or a tag with spaces", tag)
		}
	}
	switch {
	case c.Grace < 0:
		return target{}, fmt.Errorf("grace %v is negative", c.Grace)
	case c.Grace > 0 && c.FailFast:
		return target{}, errors.New("grace and failfast exclude each other")
	}
	return target{Config: c, service: service}, nil
}

func parseTarget(u *url.URL) (target, error) {
	// Errors never show the query or user info: either could hold a token.
	bad := func(format string, a ...any) error {
		return fmt.Errorf("consul: target %q: %s", discovery.Redact(u), fmt.Sprintf(format, a...))
	}
	if u.User != nil {
		return target{}, bad("credentials are not allowed in a target: set CONSUL_HTTP_TOKEN")
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return target{}, bad("bad query")
	}
	c := Config{Address: u.Host}
	for k, vs := range q {
		v := vs[len(vs)-1]
		switch k {
		case "tag":
			c.Tags = vs
		case "dc":
			c.Datacenter = v
		case "near":
			c.Near = v
		case "passing", "failfast", "stale":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return target{}, bad("%s %q is not true or false", k, v)
			}
			switch k {
			case "passing":
				c.IncludeFailing = !b
			case "failfast":
				c.FailFast = b
			default:
				c.Consistent = !b
			}
		case "grace":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return target{}, bad("grace %q is not a positive duration", v)
			}
			c.Grace = d
		case "token":
			return target{}, bad("a token is not allowed in a target: set CONSUL_HTTP_TOKEN")
		default:
			return target{}, bad("unknown parameter %q (want tag, dc, passing, near, grace, failfast, stale, onfailure, maxstale or fallback)", k)
		}
	}
	t, err := c.target(strings.TrimPrefix(u.Path, "/"), "")
	if err != nil {
		return target{}, bad("%v", err)
	}
	return t, nil
}

// newClient returns a Consul client configured from the environment, with
// addr and token when they are not empty, and the config it was made from
// (its Transport's idle connections are closed on Close; its Token is the
// one in use).
func newClient(addr, token string) (*api.Client, *api.Config, error) {
	cfg := api.DefaultConfig()
	if addr != "" {
		cfg.Address = addr
	}
	if token != "" {
		cfg.Token = token
	}
	c, err := api.NewClient(cfg)
	if err != nil {
		// api.NewClient's errors are about TLS files and addresses, never
		// the token.
		return nil, nil, fmt.Errorf("consul: client: %w", err)
	}
	return c, cfg, nil
}

// backoff is the wait before retry n+1: 200ms doubling to 30s, jittered.
func backoff(n int) time.Duration { return retry.Backoff(n, 200*time.Millisecond, 30*time.Second) }

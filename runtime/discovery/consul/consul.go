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

	// CheckInterval is the interval of the registered gRPC health check;
	// 0 means DefaultCheckInterval.
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
	u := c.url(service, registry)
	if _, err := parseTarget(u); err != nil {
		return "", err
	}
	return u.String(), nil
}

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
	return &url.URL{Scheme: Scheme, Host: addr, Path: "/" + service, RawQuery: q.Encode()}
}

type target struct {
	addr       string // empty: from the environment
	service    string
	tags       []string
	datacenter string
	passing    bool
	near       string
	grace      time.Duration
	failFast   bool
	consistent bool // no stale reads
}

func parseTarget(u *url.URL) (target, error) {
	// Errors never show the query or user info: either could hold a token.
	shown := u.Scheme + "://" + u.Host + u.Path
	bad := func(format string, a ...any) error {
		return fmt.Errorf("consul: target %q: %s", shown, fmt.Sprintf(format, a...))
	}
	if u.User != nil {
		return target{}, bad("credentials are not allowed in a target: set CONSUL_HTTP_TOKEN")
	}
	t := target{addr: u.Host, service: strings.TrimPrefix(u.Path, "/"), passing: true}
	if t.addr != "" {
		if _, err := discovery.ParseAddress(t.addr); err != nil {
			return target{}, bad("agent address: %v", err)
		}
	}
	if t.service == "" {
		return target{}, bad("no service: want consul://host:port/<service>")
	}
	if err := discovery.CheckServiceName(t.service, false); err != nil {
		return target{}, bad("%v", err)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return target{}, bad("bad query")
	}
	for k, vs := range q {
		v := vs[len(vs)-1]
		switch k {
		case "tag":
			for _, tag := range vs {
				if tag == "" {
					return target{}, bad("empty tag")
				}
			}
			t.tags = vs
		case "dc":
			t.datacenter = v
		case "near":
			t.near = v
		case "passing", "failfast", "stale":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return target{}, bad("%s %q is not true or false", k, v)
			}
			switch k {
			case "passing":
				t.passing = b
			case "failfast":
				t.failFast = b
			default:
				t.consistent = !b
			}
		case "grace":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return target{}, bad("grace %q is not a positive duration", v)
			}
			t.grace = d
		case "token":
			return target{}, bad("a token is not allowed in a target: set CONSUL_HTTP_TOKEN")
		default:
			return target{}, bad("unknown parameter %q (want tag, dc, passing, near, grace, failfast, stale, onfailure, maxstale or fallback)", k)
		}
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

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
//
// # TLS and credentials
//
// A target carries "host:port" endpoints only: TLS settings and credentials
// never go in it. They come from the environment variables etcdctl users
// already set:
//
//   - ETCDCTL_CACERT: a PEM CA bundle that verifies etcd's certificate
//     (default: the system roots).
//   - ETCDCTL_CERT and ETCDCTL_KEY: a PEM client certificate and its key, for
//     an etcd started with --client-cert-auth. Both or neither. The pair is
//     read again at every TLS handshake, so a rotated certificate is picked
//     up on reconnection.
//   - ETCD_USERNAME and ETCD_PASSWORD: etcd's user authentication. The
//     password is read when a client connects; it is never stored with a
//     target, logged, or put in an error.
//   - LB_ETCD_ALLOW_PLAINTEXT_AUTH=1 (or true): allow the username and
//     password over a connection without TLS, which is otherwise refused
//     (ErrPlaintextAuth).
//
// ETCDCTL_INSECURE_SKIP_TLS_VERIFY is not supported: etcd's certificate is
// always verified. A Config's CACertFile, CertFile and KeyFile (file paths)
// and AllowPlaintextAuth override the environment, and its endpoints may be
// written "https://host:port". TLS (1.2 or later) is on when a CA or a client
// certificate is set or an endpoint is https; a client with TLS on never
// falls back to plaintext. A target URL cannot carry a Config's settings:
// they apply to the registrar and to a resolver made from the Config itself
// (Config.Spec, which lb.Dial uses), while a client that parses the URL of
// Config.Target takes the environment's.
//
// # Values
//
// Values are read in both formats in use: etcd's naming/endpoints JSON
// ({"Addr":"10.0.0.1:50051","Metadata":{"weight":3}}), which etcd's own
// resolver reads too, and a plain "host:port" as go-kit's sd/etcdv3
// registrar writes it. An invalid value (bad JSON, bad address, over
// MaxValueSize) is dropped with a logged reason; the valid ones are served.
// The metadata keys weight, zone, version and registered_at (RFC 3339,
// which the Registrar writes: the first registration's time, for
// lb_slow_start) fill discovery.Metadata; a bad weight or registration time
// is ignored with a warning, its instance served.
//
// # Failures
//
// The resolver never stops updating: after a watch error (compaction, a lost
// leader, a closed watch, an expired auth token) it lists again and watches
// again under jittered exponential backoff, and it re-reads the whole prefix
// every ResyncInterval in case a watch event was lost. Every etcd request
// has a deadline (RequestTimeout); since the client reconnects a broken
// watch quietly, a watching resolver also reads the key count every
// ProbeInterval, so an unreachable etcd is noticed within ProbeInterval +
// RequestTimeout. A registry error is reported with
// ReportError and the last good state is kept.
package etcd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
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
	// ProbeInterval is how often a watching resolver checks that etcd can
	// still be reached (a count-only read with RequestTimeout): an
	// unreachable etcd is reported within ProbeInterval+RequestTimeout.
	ProbeInterval = 2 * time.Second
	// ResyncInterval is how often the resolver re-reads the whole prefix.
	ResyncInterval = 5 * time.Minute
	// MaxValueSize is the largest value the resolver accepts.
	MaxValueSize = 4096
)

var logger = grpclog.Component("etcd")

// ErrPlaintextAuth is wrapped by the error of a target or registrar that
// would send ETCD_USERNAME and ETCD_PASSWORD over a connection without TLS.
var ErrPlaintextAuth = errors.New("ETCD_USERNAME and ETCD_PASSWORD are set but the connection to etcd has no TLS, so the password would cross the network in clear text: " +
	"turn TLS on (an https:// endpoint, ETCDCTL_CACERT, Config.CACertFile) or allow it with LB_ETCD_ALLOW_PLAINTEXT_AUTH=1 (Config.AllowPlaintextAuth)")

// Config is the etcd backend of (lb.service).discovery.
type Config struct {
	// Endpoints are the etcd client endpoints: "host:port",
	// "http://host:port", or "https://host:port", which turns TLS on; all
	// http or all https. Empty means DefaultEndpoint.
	Endpoints []string
	// Prefix is the key prefix; a service's instances live under
	// "<Prefix>/<service>/". It starts with '/' and has no empty segment.
	// Empty means DefaultPrefix.
	Prefix string
	// TTL is the registrar's lease TTL; 0 means DefaultTTL. At least MinTTL.
	TTL time.Duration
	// PlainValue makes the registrar write "host:port" values (as go-kit's
	// sd/etcdv3 reads them) instead of etcd's naming/endpoints JSON.
	PlainValue bool

	// CACertFile is the path of a PEM CA bundle that verifies etcd's
	// certificate; setting it turns TLS on. Empty means ETCDCTL_CACERT,
	// else the system roots when TLS is on.
	CACertFile string
	// CertFile is the path of a PEM client certificate, for an etcd that
	// requires one; setting it (with KeyFile) turns TLS on. CertFile and
	// KeyFile are set together; when both are empty they come from
	// ETCDCTL_CERT and ETCDCTL_KEY.
	CertFile string
	// KeyFile is the path of CertFile's PEM private key.
	KeyFile string
	// AllowPlaintextAuth allows ETCD_USERNAME and ETCD_PASSWORD over a
	// connection without TLS, as LB_ETCD_ALLOW_PLAINTEXT_AUTH=1 does. By
	// default that is refused with ErrPlaintextAuth.
	AllowPlaintextAuth bool
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
// The URL carries "host:port" endpoints only: a client that parses it
// takes TLS and credentials from the environment. lb.Dial hands c itself
// to the resolver (Spec), so c's TLS settings apply there.
func (c Config) Target(service, registry string) (string, error) {
	t, err := c.target(service, registry)
	if err != nil {
		return "", err
	}
	u := url.URL{Scheme: Scheme, Host: strings.Join(t.endpoints, ","), Path: t.prefix}
	// Parse it again as gRPC will: Go's URL parser refuses some hosts
	// that url.URL writes, e.g. a list with an IPv6 address. The URL's
	// own security is the environment's, checked when it is parsed to be
	// resolved: c's is checked above.
	pu, err := url.Parse(u.String())
	if err != nil {
		return "", fmt.Errorf("etcd: target %q cannot be parsed (a list of endpoints cannot hold an IPv6 address): %w", u.String(), err)
	}
	if _, err := parseURL(pu); err != nil {
		return "", err
	}
	return u.String(), nil
}

type target struct {
	endpoints []string // "host:port"
	prefix    string   // without the trailing '/'
	sec       security
}

// security is how a client secures its connection to etcd and
// authenticates. It is comparable: clients with equal endpoints and
// security are shared. It holds no secret (newClient reads the password
// from ETCD_PASSWORD), so printing it shows nothing that must stay hidden.
type security struct {
	tls           bool   // TLS to every endpoint; never plaintext
	caFile        string // PEM CA bundle; empty: the system roots
	certFile      string // PEM client certificate, with keyFile; or empty
	keyFile       string
	username      string // ETCD_USERNAME; empty: no authentication
	plaintextAuth bool   // the username and password may go without TLS
}

// normalized turns TLS on when a CA or client certificate is set, and
// clears what does not matter, so that equal settings compare equal.
func (s security) normalized() security {
	if s.caFile != "" || s.certFile != "" || s.keyFile != "" {
		s.tls = true
	}
	if s.username == "" || s.tls {
		s.plaintextAuth = false
	}
	return s
}

// check reports settings that cannot work or would leak the password.
func (s security) check() error {
	if (s.certFile == "") != (s.keyFile == "") {
		return errors.New("a client certificate needs both a certificate and a key file (ETCDCTL_CERT and ETCDCTL_KEY, or Config.CertFile and Config.KeyFile)")
	}
	if s.username != "" && !s.tls && !s.plaintextAuth {
		return ErrPlaintextAuth
	}
	return nil
}

// tlsConfig returns the TLS configuration of s, nil when TLS is off.
func (s security) tlsConfig() (*tls.Config, error) {
	if !s.tls {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if s.caFile != "" {
		pem, err := os.ReadFile(s.caFile)
		if err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", s.caFile)
		}
	}
	if s.certFile != "" {
		load := func() (*tls.Certificate, error) {
			cert, err := tls.LoadX509KeyPair(s.certFile, s.keyFile)
			if err != nil {
				// Neither the error nor the paths hold key material.
				return nil, fmt.Errorf("client certificate %s and key %s: %w", s.certFile, s.keyFile, err)
			}
			return &cert, nil
		}
		// Fail now on a bad pair, and load it again at every handshake
		// so that a rotated certificate is used on reconnection.
		if _, err := load(); err != nil {
			return nil, err
		}
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return load() }
	}
	return tc, nil
}

// securityFromEnv returns the security that the environment sets: the
// security of every target URL, and the base of a Config's.
func securityFromEnv() security {
	allow, _ := strconv.ParseBool(os.Getenv("LB_ETCD_ALLOW_PLAINTEXT_AUTH"))
	return security{
		caFile:        os.Getenv("ETCDCTL_CACERT"),
		certFile:      os.Getenv("ETCDCTL_CERT"),
		keyFile:       os.Getenv("ETCDCTL_KEY"),
		username:      os.Getenv("ETCD_USERNAME"),
		plaintextAuth: allow,
	}.normalized()
}

// security returns c's security: the environment's, overridden by c's
// fields; https tells whether c's endpoints are written https://.
func (c Config) security(https bool) security {
	s := securityFromEnv()
	if c.CACertFile != "" {
		s.caFile = c.CACertFile
	}
	if c.CertFile != "" || c.KeyFile != "" {
		s.certFile, s.keyFile = c.CertFile, c.KeyFile
	}
	s.tls = s.tls || https
	s.plaintextAuth = s.plaintextAuth || c.AllowPlaintextAuth
	return s.normalized()
}

// target returns the resolved target of service under c: the endpoints and
// prefix that parseTarget returns for c.Target(service, registry), with the
// security of c, which a target URL does not carry.
func (c Config) target(service, registry string) (target, error) {
	t := target{prefix: c.servicePrefix(service)}
	if err := checkPrefix(t.prefix); err != nil {
		return target{}, fmt.Errorf("etcd: service %q under Prefix %q: %w", service, c.Prefix, err)
	}
	schemes := map[string][]string{}
	for _, ep := range c.endpoints(registry) {
		addr, scheme, err := parseEndpoint(ep)
		if err != nil {
			return target{}, fmt.Errorf("etcd: endpoint: %w", err)
		}
		t.endpoints = append(t.endpoints, addr)
		schemes[scheme] = append(schemes[scheme], ep)
	}
	if len(schemes["http"]) > 0 && len(schemes["https"]) > 0 {
		return target{}, fmt.Errorf("etcd: endpoints %q mix http:// and https://", c.endpoints(registry))
	}
	t.sec = c.security(len(schemes["https"]) > 0)
	if t.sec.tls && len(schemes["http"]) > 0 {
		return target{}, fmt.Errorf("etcd: endpoint %q is http:// but TLS is on (a CA or client certificate is set by Config or ETCDCTL_*): write https:// or host:port", schemes["http"][0])
	}
	if err := t.sec.check(); err != nil {
		return target{}, fmt.Errorf("etcd: %w", err)
	}
	return t, nil
}

// parseEndpoint returns a Config endpoint as "host:port" and its scheme:
// "http", "https", or "" when it has none.
func parseEndpoint(ep string) (addr, scheme string, err error) {
	rest := ep
	if s, r, ok := strings.Cut(ep, "://"); ok {
		scheme, rest = strings.ToLower(s), strings.TrimSuffix(r, "/")
		if scheme != "http" && scheme != "https" {
			return "", "", fmt.Errorf("%w: scheme %q: want http or https", discovery.ErrBadAddress, s)
		}
	}
	if strings.Contains(rest, "@") {
		// Not shown: it could hold a password.
		return "", "", fmt.Errorf("%w: credentials are not allowed in an endpoint: set ETCD_USERNAME and ETCD_PASSWORD", discovery.ErrBadAddress)
	}
	addr, err = discovery.ParseAddress(rest)
	return addr, scheme, err
}

// checkPrefix checks a key prefix without its trailing '/': it starts with
// '/' and has no empty segment, so that "<prefix>/" is a key prefix no
// other service's keys share by accident. Targets and registrars both
// check theirs with it.
func checkPrefix(p string) error {
	switch {
	case p == "" || p == "/":
		return fmt.Errorf("empty key prefix %q", p)
	case p[0] != '/':
		return fmt.Errorf("key prefix %q does not start with '/'", p)
	case slices.Contains(strings.Split(p[1:], "/"), ""):
		return fmt.Errorf("key prefix %q has an empty segment", p)
	}
	return nil
}

// parseTarget returns the target of u, with the environment's security.
func parseTarget(u *url.URL) (target, error) {
	t, err := parseURL(u)
	if err != nil {
		return target{}, err
	}
	t.sec = securityFromEnv()
	if err := t.sec.check(); err != nil {
		return target{}, badTarget(u, "%w", err)
	}
	return t, nil
}

// badTarget returns an error about target u. It shows u without user info
// or query: either could hold a secret.
func badTarget(u *url.URL, format string, a ...any) error {
	return fmt.Errorf("etcd: target %q: %w", discovery.Redact(u), fmt.Errorf(format, a...))
}

// parseURL returns the endpoints and prefix of u, with no security.
func parseURL(u *url.URL) (target, error) {
	bad := func(format string, a ...any) error { return badTarget(u, format, a...) }
	if u.User != nil {
		return target{}, bad("credentials are not allowed in a target: set ETCD_USERNAME and ETCD_PASSWORD")
	}
	if u.RawQuery != "" {
		return target{}, bad("query parameters are not supported")
	}
	t := target{endpoints: []string{DefaultEndpoint}, prefix: strings.TrimSuffix(u.Path, "/")}
	if u.Host != "" {
		t.endpoints = nil
		for _, ep := range strings.Split(u.Host, ",") {
			addr, err := discovery.ParseAddress(ep)
			if err != nil {
				return target{}, bad("endpoint: %w", err)
			}
			t.endpoints = append(t.endpoints, addr)
		}
	}
	if err := checkPrefix(t.prefix); err != nil {
		return target{}, bad("%w: want etcd://host:port/<prefix>", err)
	}
	return t, nil
}

// newClient returns an etcd client of endpoints ("host:port") secured by
// sec. ctx is the client's context: it ends the client, and cancels the
// connection while it is being made. newClient does not wait for a
// connection unless ETCD_USERNAME is set: then it fetches a token within
// RequestTimeout.
func newClient(ctx context.Context, endpoints []string, sec security) (*clientv3.Client, *handshakes, error) {
	fail := func(err error) (*clientv3.Client, *handshakes, error) {
		// Errors never carry the password: clientv3's do not either.
		return nil, nil, fmt.Errorf("etcd: client of %s: %w", strings.Join(endpoints, ","), err)
	}
	if err := sec.check(); err != nil {
		return fail(err)
	}
	tc, err := sec.tlsConfig()
	if err != nil {
		return fail(err)
	}
	cfg := clientv3.Config{
		Context: ctx,
		// Without a scheme, clientv3 uses TLS exactly when cfg.TLS is set.
		Endpoints:            endpoints,
		TLS:                  tc,
		DialTimeout:          RequestTimeout,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
		DialOptions: []grpc.DialOption{
			// Reconnect within a second of etcd coming back, not after
			// gRPC's default backoff of up to two minutes.
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           grpcbackoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
				MinConnectTimeout: 2 * time.Second,
			}),
		},
		Logger: zap.NewNop(),
	}
	hs := &handshakes{}
	if tc != nil {
		// The same TLS as clientv3's own (its option comes first, this
		// one wins), recording why a handshake failed.
		cfg.DialOptions = append(cfg.DialOptions, grpc.WithTransportCredentials(recordingCreds{TransportCredentials: credentials.NewTLS(tc), h: hs}))
	}
	if sec.username != "" {
		cfg.Username, cfg.Password = sec.username, os.Getenv("ETCD_PASSWORD")
		if cfg.Password == "" {
			return fail(errors.New("ETCD_USERNAME is set but ETCD_PASSWORD is empty"))
		}
	}
	c, err := clientv3.New(cfg)
	if err != nil {
		return fail(hs.explain(err))
	}
	return c, hs, nil
}

// handshakes keeps the error of the last TLS handshake with etcd, while
// the handshakes fail: clientv3 waits for a connection and then reports
// only its deadline, so an error is explained with it (a wrong CA names
// itself instead of "context deadline exceeded").
type handshakes struct{ last atomic.Pointer[error] }

// explain adds the last failed handshake's error to err.
func (h *handshakes) explain(err error) error {
	if h == nil || err == nil {
		return err
	}
	if p := h.last.Load(); p != nil {
		return fmt.Errorf("%w (the last TLS handshake with etcd failed: %w)", err, *p)
	}
	return err
}

// recordingCreds are TLS credentials that record each handshake's
// failure, and forget it on a success.
type recordingCreds struct {
	credentials.TransportCredentials
	h *handshakes
}

func (c recordingCreds) ClientHandshake(ctx context.Context, authority string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	nc, ai, err := c.TransportCredentials.ClientHandshake(ctx, authority, conn)
	switch {
	case err == nil:
		c.h.last.Store(nil)
	case ctx.Err() == nil:
		c.h.last.Store(&err)
	}
	return nc, ai, err
}

func (c recordingCreds) Clone() credentials.TransportCredentials {
	return recordingCreds{TransportCredentials: c.TransportCredentials.Clone(), h: c.h}
}

// withTimeout returns a context for one etcd request.
func withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, RequestTimeout)
}

// backoff is the wait before retry n+1: 100ms doubling to 10s, jittered.
func backoff(n int) time.Duration { return retry.Backoff(n, 100*time.Millisecond, 10*time.Second) }

// ErrValue is wrapped by the reasons a value is dropped.
var ErrValue = errors.New("bad value")

package main

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/durationpb"

	lbpb "github.com/protoc-gen-go-lb/protoc-gen-go-lb/proto/lb"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/lb"
)

// This file reads the (lb.service) and (lb.method) options of a file once,
// checks them, and returns the file's model (model.go), which is all that
// emission reads. The policies and their parameters are policies.go's.

// Limits that the checks enforce.
const (
	minRetryAttempts  = 2
	maxRetryAttempts  = 5 // gRPC caps retries at 5 attempts
	defaultBackoff    = 100 * time.Millisecond
	defaultMaxBackoff = time.Second
	defaultMultiplier = 2.0
)

// errorList collects every problem of a run, each naming its place and
// element.
type errorList []error

// add reports a problem of the service or method desc.
func (l *errorList) add(desc protoreflect.Descriptor, format string, args ...any) {
	*l = append(*l, fmt.Errorf("%s: %s", where(desc), fmt.Sprintf(format, args...)))
}

// where names desc as compilers do, with its file, line and column (from
// the source info protoc and buf send), then its full name:
// "greeter.proto:12:3: helloworld.Greeter.SayHello". Without source info,
// the file alone.
func where(desc protoreflect.Descriptor) string {
	file := desc.ParentFile()
	loc := file.SourceLocations().ByDescriptor(desc)
	if loc.Path == nil {
		return fmt.Sprintf("%s: %s", file.Path(), desc.FullName())
	}
	return fmt.Sprintf("%s:%d:%d: %s", file.Path(), loc.StartLine+1, loc.StartColumn+1, desc.FullName())
}

func (l errorList) err() error { return errors.Join(l...) }

// readFile returns the model of f's annotated services, or nil when it has
// none; protoc is the compiler's version. Problems go to errs.
func readFile(f *protogen.File, protoc string, errs *errorList) *fileModel {
	m := &fileModel{
		file:          f,
		Version:       version,
		ProtocVersion: protoc,
		Source:        f.Desc.Path(),
		Package:       f.GoPackageName,
		idents:        goIdents,
	}
	for _, s := range f.Services {
		rules, _ := proto.GetExtension(s.Desc.Options(), lbpb.E_Service).(*lbpb.ServiceRules)
		if rules == nil {
			for _, meth := range s.Methods {
				if methodRules(meth) != nil {
					errs.add(meth.Desc, "(lb.method) needs (lb.service) on %s", s.Desc.FullName())
				}
			}
			continue
		}
		m.Services = append(m.Services, readService(s, rules, errs))
	}
	if len(m.Services) == 0 {
		return nil
	}
	return m
}

func methodRules(m *protogen.Method) *lbpb.MethodRules {
	r, _ := proto.GetExtension(m.Desc.Options(), lbpb.E_Method).(*lbpb.MethodRules)
	return r
}

func readService(s *protogen.Service, rules *lbpb.ServiceRules, errs *errorList) *serviceModel {
	name := s.Desc.FullName()
	bad := func(format string, args ...any) { errs.add(s.Desc, format, args...) }
	m := &serviceModel{
		service:            s,
		Names:              newNames(s),
		FullName:           string(name),
		RegistryName:       string(name),
		Comment:            commentLines(s.Comments.Leading),
		Deprecated:         s.Desc.Options().(*descriptorpb.ServiceOptions).GetDeprecated(),
		PoolSize:           rules.GetPoolSize(),
		DisableHealthCheck: rules.GetDisableHealthCheck(),
		idents:             goIdents,
	}
	if n := rules.GetName(); n != "" {
		m.RegistryName = n
	}
	m.Discovery = readDiscovery(rules.GetDiscovery(), bad)
	// A name every client of the backend can resolve: etcd keys take '/',
	// Consul service names do not.
	if err := discovery.CheckServiceName(m.RegistryName, m.Discovery.backend != nil && m.Discovery.backend.slash); err != nil {
		field := "(lb.service).name"
		if rules.GetName() == "" {
			field = "the default (lb.service).name (the service's full name)"
		}
		bad("%s: %v", field, err)
	}
	if k, ok := m.Discovery.settings.(*kubernetesModel); ok && k.Service == "" && !kubernetesServiceName(m.RegistryName) {
		bad("(lb.service).discovery.kubernetes.service is unset and the registry name %q is not a Kubernetes Service name (a DNS label: lower case letters, digits and '-', at most 63, starting with a letter): set service, or (lb.service).name", m.RegistryName)
	}
	m.Failure = readFailure(rules.GetOnRegistryFailure(), bad)
	m.Connection = readConnection(rules.GetConnection(), bad)
	m.RetryBudget = readBudget(rules.GetRetryBudget(), bad)
	if c, ok := m.Discovery.settings.(*consulModel); ok && m.Failure != nil && (c.FailFast || c.Grace != 0) {
		bad("(lb.service).on_registry_failure and discovery.consul grace or fail_fast exclude each other: use on_registry_failure")
	}
	checkPoolSize(m.PoolSize, bad)
	m.Balancer = readPolicy(rules, bad)
	checkPoolPolicy(m.PoolSize, m.Balancer, bad)
	m.OutlierEjection = readOutlier(rules.GetOutlierEjection(), bad)
	m.SlowStart = readSlowStart(rules.GetSlowStart(), m.Balancer, bad)
	m.ZoneAware = readZoneAware(rules.GetZoneAware(), m.Balancer, bad)
	m.Subset = readSubset(rules.GetSubset(), bad)
	for _, meth := range s.Methods {
		if meth.Desc.IsStreamingClient() || meth.Desc.IsStreamingServer() {
			m.Streams = append(m.Streams, string(meth.Desc.Name()))
		}
		if mm := readMethod(meth, m.Balancer, errs); mm != nil {
			m.Methods = append(m.Methods, mm)
		}
	}
	return m
}

// commentLines returns the lines of a proto comment, without the comment
// markers protogen.Comments.String adds; nil for none.
func commentLines(c protogen.Comments) []string {
	if c == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(c), "\n"), "\n")
}

func readStatic(st *lbpb.Static, bad badFunc) *staticModel {
	m := &staticModel{}
	if len(st.GetAddresses()) == 0 {
		bad("(lb.service).discovery.static.addresses is empty")
	}
	for i, a := range st.GetAddresses() {
		addr, err := discovery.ParseAddress(a)
		if err != nil {
			bad("(lb.service).discovery.static.addresses[%d]: %v", i, err)
		}
		m.Addresses = append(m.Addresses, addr)
	}
	return m
}

func readFailure(r *lbpb.RegistryFailure, bad badFunc) *failureModel {
	if r == nil {
		return nil
	}
	const pre = "(lb.service).on_registry_failure."
	m := &failureModel{MaxStaleness: positiveDuration(r.GetMaxStaleness(), pre+"max_staleness", bad)}
	mode := r.GetMode()
	switch mode {
	case lbpb.RegistryFailure_MODE_UNSPECIFIED:
		mode = lbpb.RegistryFailure_KEEP_LAST_GOOD
	case lbpb.RegistryFailure_KEEP_LAST_GOOD: // the zero discovery.FailureMode
	case lbpb.RegistryFailure_FAIL_FAST:
		m.Mode = ptr(discoveryPackage.Ident("FailFast"))
	case lbpb.RegistryFailure_STATIC_FALLBACK:
		m.Mode = ptr(discoveryPackage.Ident("StaticFallback"))
	default:
		bad(pre+"mode %d is not a known mode", mode)
	}
	if mode == lbpb.RegistryFailure_FAIL_FAST && r.GetMaxStaleness() != nil {
		bad(pre + "max_staleness does not apply to FAIL_FAST")
	}
	fallback := mode == lbpb.RegistryFailure_STATIC_FALLBACK
	switch n := len(r.GetFallbackAddresses()); {
	case fallback && n == 0:
		bad(pre + "fallback_addresses is required with STATIC_FALLBACK")
	case !fallback && n > 0:
		bad(pre+"fallback_addresses is set but the mode is %s: it goes with STATIC_FALLBACK", mode)
	}
	for i, a := range r.GetFallbackAddresses() {
		addr, err := discovery.ParseAddress(a)
		if err != nil {
			bad(pre+"fallback_addresses[%d]: %v", i, err)
		}
		m.Fallback = append(m.Fallback, addr)
	}
	return m
}

func ptr[T any](v T) *T { return &v }

// minLeaseTTL is etcd.MinTTL, which the plugin does not import: that
// would link the etcd client.
const minLeaseTTL = 2 * time.Second

func readEtcd(e *lbpb.Etcd, bad badFunc) *etcdModel {
	const pre = "(lb.service).discovery.etcd."
	m := &etcdModel{Prefix: e.GetPrefix(), PlainValue: e.GetPlainValue(), CACertFile: e.GetCaCertFile(), CertFile: e.GetCertFile(), KeyFile: e.GetKeyFile()}
	schemes := map[bool]bool{}
	for i, ep := range e.GetEndpoints() {
		scheme, hostport, found := strings.Cut(ep, "://")
		if !found {
			scheme, hostport = "", ep
		}
		if scheme != "" && scheme != "http" && scheme != "https" {
			bad(pre+"endpoints[%d] %q: the scheme must be http or https", i, ep)
		}
		schemes[scheme == "https"] = true
		addr, err := discovery.ParseAddress(hostport)
		if err != nil {
			bad(pre+"endpoints[%d]: %v", i, err)
		} else if scheme != "" {
			addr = scheme + "://" + addr
		}
		m.Endpoints = append(m.Endpoints, addr)
	}
	if len(schemes) > 1 {
		bad(pre + "endpoints mix https and plaintext: use one")
	}
	if (m.CertFile == "") != (m.KeyFile == "") {
		bad(pre + "cert_file and key_file go together: set both or neither")
	}
	if m.Prefix != "" && (m.Prefix[0] != '/' || strings.ContainsAny(m.Prefix, " \t\r\n")) {
		bad(pre+"prefix %q must start with '/' and have no spaces", m.Prefix)
	}
	m.TTL = positiveDuration(e.GetLeaseTtl(), pre+"lease_ttl", bad)
	if m.TTL != 0 && (m.TTL < minLeaseTTL || m.TTL%time.Second != 0) {
		bad(pre+"lease_ttl %v must be whole seconds, at least %v", m.TTL, minLeaseTTL)
	}
	return m
}

func readConsul(c *lbpb.Consul, bad badFunc) *consulModel {
	const pre = "(lb.service).discovery.consul."
	m := &consulModel{
		Address:                 c.GetAddress(),
		Datacenter:              c.GetDatacenter(),
		Near:                    c.GetNear(),
		Tags:                    c.GetTags(),
		IncludeFailing:          c.PassingOnly != nil && !c.GetPassingOnly(),
		FailFast:                c.GetFailFast(),
		Grace:                   positiveDuration(c.GetGrace(), pre+"grace", bad),
		CheckInterval:           positiveDuration(c.GetCheckInterval(), pre+"check_interval", bad),
		DeregisterCriticalAfter: positiveDuration(c.GetDeregisterCriticalAfter(), pre+"deregister_critical_after", bad),
		TTL:                     positiveDuration(c.GetTtl(), pre+"ttl", bad),
		GRPCUseTLS:              c.GetGrpcUseTls(),
		TLSServerName:           c.GetTlsServerName(),
	}
	if m.TLSServerName != "" && !m.GRPCUseTLS {
		bad(pre + "tls_server_name needs grpc_use_tls")
	}
	if m.Address != "" {
		if _, err := discovery.ParseAddress(m.Address); err != nil {
			bad(pre+"address: %v", err)
		}
	}
	for i, t := range m.Tags {
		if t == "" || strings.ContainsAny(t, " \t\r\n") {
			bad(pre+"tags[%d] %q must be non-empty, without spaces", i, t)
		}
	}
	if m.FailFast && c.GetGrace() != nil {
		bad(pre + "grace and fail_fast exclude each other")
	}
	return m
}

// The names Kubernetes takes (the plugin does not import the kubernetes
// package, which would link client-go): DNS labels and port names.
var (
	dnsLabelRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	portNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
)

// kubernetesServiceName reports whether name is a Kubernetes Service name:
// a DNS label (RFC 1035) of at most 63 characters, starting with a letter.
func kubernetesServiceName(name string) bool {
	return len(name) <= 63 && dnsLabelRE.MatchString(name) && name[0] >= 'a'
}

func readKubernetes(k *lbpb.Kubernetes, bad badFunc) *kubernetesModel {
	const pre = "(lb.service).discovery.kubernetes."
	m := &kubernetesModel{Namespace: k.GetNamespace(), Service: k.GetService(), Port: k.GetPort()}
	if m.Namespace != "" && (len(m.Namespace) > 63 || !dnsLabelRE.MatchString(m.Namespace)) {
		bad(pre+"namespace %q is not a Kubernetes namespace (a DNS label: lower case letters, digits and '-', at most 63)", m.Namespace)
	}
	if m.Service != "" && !kubernetesServiceName(m.Service) {
		bad(pre+"service %q is not a Kubernetes Service name (a DNS label: lower case letters, digits and '-', at most 63, starting with a letter)", m.Service)
	}
	if p := m.Port; p != "" {
		if n, err := strconv.Atoi(p); err == nil {
			if n < 1 || n > math.MaxUint16 {
				bad(pre+"port %d is not in 1-65535", n)
			}
		} else if len(p) > 15 || !portNameRE.MatchString(p) || !strings.ContainsAny(p, "abcdefghijklmnopqrstuvwxyz") || strings.Contains(p, "--") {
			bad(pre+"port %q is neither a number 1-65535 nor a port name (lower case letters, digits and '-', at most 15, with a letter)", p)
		}
	}
	return m
}

var hostnameRE = regexp.MustCompile(`^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_.])?$`)

func readDNS(d *lbpb.DNS, bad badFunc) *dnsModel {
	m := &dnsModel{Host: d.GetHost(), Port: d.GetPort(), SRV: d.GetRecord() == lbpb.DNS_SRV, Server: d.GetServer()}
	switch {
	case m.Host == "":
		bad("(lb.service).discovery.dns.host is required")
	case !hostnameRE.MatchString(m.Host):
		bad("(lb.service).discovery.dns.host %q is not a DNS name", m.Host)
	}
	switch r := d.GetRecord(); {
	case r != lbpb.DNS_RECORD_TYPE_UNSPECIFIED && r != lbpb.DNS_A && r != lbpb.DNS_SRV:
		bad("(lb.service).discovery.dns.record %d is not A or SRV", r)
	case m.SRV && m.Port != 0:
		bad("(lb.service).discovery.dns.port must be unset with record SRV: the SRV records give the ports")
	case !m.SRV && (m.Port == 0 || m.Port > math.MaxUint16):
		bad("(lb.service).discovery.dns.port %d is not in 1-65535 (required for A records)", m.Port)
	}
	m.Refresh = positiveDuration(d.GetRefreshInterval(), "(lb.service).discovery.dns.refresh_interval", bad)
	if m.Server != "" {
		if _, err := discovery.ParseAddress(m.Server); err != nil {
			bad("(lb.service).discovery.dns.server: %v", err)
		}
	}
	return m
}

// positiveDuration returns d, reporting it when it is set but not a valid,
// positive duration.
func positiveDuration(d *durationpb.Duration, what string, bad badFunc) time.Duration {
	if d == nil {
		return 0
	}
	if d.CheckValid() != nil {
		// CheckValid's message prints the proto in an unstable format.
		bad("%s {seconds: %d, nanos: %d} is not a valid duration: nanos must be within a second and of the sign of seconds", what, d.GetSeconds(), d.GetNanos())
		return 0
	}
	if d.AsDuration() <= 0 {
		bad("%s %v must be positive", what, d.AsDuration())
		return 0
	}
	return d.AsDuration()
}

// readMethod returns the model of meth's settings, or nil when it has
// none; b is the service's policy, nil when unknown.
func readMethod(meth *protogen.Method, b *balancerModel, errs *errorList) *methodModel {
	bad := func(format string, args ...any) { errs.add(meth.Desc, format, args...) }
	rules := methodRules(meth)
	m := &methodModel{Name: string(meth.Desc.Name()), HashKey: rules.GetHashKey()}
	switch meth.Desc.Options().(*descriptorpb.MethodOptions).GetIdempotencyLevel() {
	case descriptorpb.MethodOptions_IDEMPOTENT, descriptorpb.MethodOptions_NO_SIDE_EFFECTS:
		m.Idempotent = true
	}
	if rules != nil && rules.Idempotent != nil {
		m.Idempotent = rules.GetIdempotent()
	}
	m.Timeout = positiveDuration(rules.GetTimeout(), "(lb.method).timeout", bad)
	if rules.GetRetry() != nil {
		m.Retry = readRetry(rules.GetRetry(), m.Idempotent, bad)
	}
	unary := !meth.Desc.IsStreamingClient() && !meth.Desc.IsStreamingServer()
	m.WaitForReady = rules.GetWaitForReady()
	if h := rules.GetHedging(); h != nil {
		const pre = "(lb.method).hedging"
		m.Hedging = &hedgingModel{MaxAttempts: h.GetMaxAttempts(), Delay: positiveDuration(h.GetDelay(), pre+".delay", bad)}
		switch {
		case !unary:
			bad(pre + " on a streaming method: only unary calls are hedged")
		case !m.Idempotent:
			bad(pre + " on a method that is not idempotent: a hedged call may run more than once; set idempotency_level = IDEMPOTENT (or NO_SIDE_EFFECTS), or (lb.method).idempotent")
		case m.Retry != nil:
			bad(pre + " and (lb.method).retry exclude each other (gRFC A6): hedging retries by itself")
		case b != nil && b.policy.oneInstance:
			bad(pre+" under %s: each hedge goes to another instance, and this policy sends a call to one", b.policy.enum)
		}
		if n := h.GetMaxAttempts(); n < minRetryAttempts || n > maxRetryAttempts {
			bad(pre+".max_attempts %d is not in %d-%d", n, minRetryAttempts, maxRetryAttempts)
		}
		if h.GetDelay() == nil {
			bad(pre + ".delay is required")
		}
	}
	switch {
	case b == nil:
	case m.HashKey != "" && !b.policy.hashes:
		bad("(lb.method).hash_key is set but the service's policy is %s: hash_key only applies to %s", b.policy.enum, hashingPolicies())
	case m.HashKey != "" && !unary:
		bad("(lb.method).hash_key on a streaming method: the instance is picked before the first message is sent; set the lb-hash-key header (lb.HashKeyHeader) in the call's context instead, or under CONSISTENT_HASH consistenthash.WithKey")
	case m.HashKey != "":
		checkFieldPath(meth.Input, m.HashKey, bad)
	case unary && b.keyRequired != "":
		bad("(lb.method).hash_key is required: %s", b.keyRequired)
	}
	if m.Timeout == 0 && m.Retry == nil && m.HashKey == "" && !m.Idempotent && !m.WaitForReady && m.Hedging == nil {
		return nil
	}
	return m
}

// readBudget returns (lb.service).retry_budget, checked; nil when unset.
func readBudget(b *lbpb.RetryBudget, bad badFunc) *budgetModel {
	if b == nil {
		return nil
	}
	const pre = "(lb.service).retry_budget."
	m := &budgetModel{MaxTokens: b.GetMaxTokens(), TokenRatio: b.GetTokenRatio(), Disabled: b.GetDisabled()}
	if m.MaxTokens > 1000 {
		bad(pre+"max_tokens %d is more than 1000", m.MaxTokens)
	}
	if r := m.TokenRatio; r != 0 && !(r > 0 && r <= 1) {
		bad(pre+"token_ratio %v is not in (0, 1]", r)
	}
	return m
}

func readRetry(r *lbpb.Retry, idempotent bool, bad badFunc) *retryModel {
	const pre = "(lb.method).retry."
	m := &retryModel{
		MaxAttempts:       r.GetMaxAttempts(),
		InitialBackoff:    positiveDuration(r.GetInitialBackoff(), pre+"initial_backoff", bad),
		MaxBackoff:        positiveDuration(r.GetMaxBackoff(), pre+"max_backoff", bad),
		BackoffMultiplier: r.GetBackoffMultiplier(),
	}
	if m.MaxAttempts < minRetryAttempts || m.MaxAttempts > maxRetryAttempts {
		bad(pre+"max_attempts %d is not in %d-%d", m.MaxAttempts, minRetryAttempts, maxRetryAttempts)
	}
	if m.InitialBackoff == 0 {
		m.InitialBackoff = defaultBackoff
	}
	if m.MaxBackoff == 0 {
		m.MaxBackoff = max(defaultMaxBackoff, m.InitialBackoff)
	}
	if m.InitialBackoff > m.MaxBackoff {
		bad(pre+"initial_backoff %v is more than max_backoff %v", m.InitialBackoff, m.MaxBackoff)
	}
	switch {
	case m.BackoffMultiplier == 0:
		m.BackoffMultiplier = defaultMultiplier
	case m.BackoffMultiplier < 0 || math.IsNaN(m.BackoffMultiplier) || math.IsInf(m.BackoffMultiplier, 0):
		bad(pre+"backoff_multiplier %v must be a positive number", m.BackoffMultiplier)
	}
	names := r.GetRetryableCodes()
	if len(names) == 0 {
		names = []string{"UNAVAILABLE"}
	}
	for _, n := range names {
		c, ok := parseCode(n, pre+"retryable_codes", bad)
		if !ok {
			continue
		}
		if c != codes.Unavailable && !idempotent {
			bad(pre+"retryable_codes: retrying on %s needs an idempotent method: set (lb.method).idempotent or the method's idempotency_level", n)
		}
		m.RetryableCodes = append(m.RetryableCodes, codesPackage.Ident(c.String()))
	}
	return m
}

// parseCode returns the status code named n ("UNAVAILABLE"), reporting
// it under what when it names none, or OK.
func parseCode(n, what string, bad badFunc) (codes.Code, bool) {
	var c codes.Code
	if err := c.UnmarshalJSON([]byte(strconv.Quote(n))); err != nil || c == codes.OK {
		bad("%s: %q is not a gRPC status code name other than OK (e.g. UNAVAILABLE)", what, n)
		return 0, false
	}
	return c, true
}

// checkFieldPath reports whether path names a singular scalar field of
// msg through singular message fields.
func checkFieldPath(msg *protogen.Message, path string, bad badFunc) {
	segs := strings.Split(path, ".")
	for i, seg := range segs {
		var field *protogen.Field
		for _, f := range msg.Fields {
			if string(f.Desc.Name()) == seg {
				field = f
				break
			}
		}
		last := i == len(segs)-1
		switch {
		case field == nil:
			bad("(lb.method).hash_key %q: %q is not a field of %s", path, seg, msg.Desc.FullName())
		case field.Desc.IsList() || field.Desc.IsMap():
			bad("(lb.method).hash_key %q: %s is repeated; hash_key needs a singular field", path, field.Desc.FullName())
		case last && field.Message != nil:
			bad("(lb.method).hash_key %q: %s is a message field; hash_key must end at a scalar, string, bytes or enum field", path, field.Desc.FullName())
		case !last && field.Message == nil:
			bad("(lb.method).hash_key %q: %s is not a message field, so it has no field %q", path, field.Desc.FullName(), segs[i+1])
		default:
			msg = field.Message
			continue
		}
		return
	}
}

func readConnection(c *lbpb.Connection, bad badFunc) *connectionModel {
	if c == nil {
		return nil
	}
	const pre = "(lb.service).connection."
	m := &connectionModel{
		KeepaliveTime:         positiveDuration(c.GetKeepaliveTime(), pre+"keepalive_time", bad),
		KeepaliveTimeout:      positiveDuration(c.GetKeepaliveTimeout(), pre+"keepalive_timeout", bad),
		MaxConnectionAge:      positiveDuration(c.GetMaxConnectionAge(), pre+"max_connection_age", bad),
		MaxConnectionAgeGrace: positiveDuration(c.GetMaxConnectionAgeGrace(), pre+"max_connection_age_grace", bad),
		MaxConnectionIdle:     positiveDuration(c.GetMaxConnectionIdle(), pre+"max_connection_idle", bad),
	}
	if m.KeepaliveTime != 0 && m.KeepaliveTime < lb.MinKeepaliveTime {
		bad(pre+"keepalive_time %v is less than gRPC's minimum %v (grpc-go would ping every %v anyway)", m.KeepaliveTime, lb.MinKeepaliveTime, lb.MinKeepaliveTime)
	}
	if m.KeepaliveTimeout != 0 && m.KeepaliveTime == 0 {
		bad(pre + "keepalive_timeout needs keepalive_time")
	}
	if m.MaxConnectionAge != 0 && m.MaxConnectionAge < time.Second {
		bad(pre+"max_connection_age %v is less than 1s", m.MaxConnectionAge)
	}
	if m.MaxConnectionAgeGrace != 0 && m.MaxConnectionAge == 0 {
		bad(pre + "max_connection_age_grace needs max_connection_age")
	}
	if m.MaxConnectionIdle != 0 && m.MaxConnectionIdle < time.Second {
		bad(pre+"max_connection_idle %v is less than 1s", m.MaxConnectionIdle)
	}
	return m
}

package main

import (
	"errors"
	"fmt"
	"math"
	"math/big"
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
)

// This file reads the (lb.service) and (lb.method) options of a file once,
// checks them, and returns plain models that lb.go generates code from.

// Limits that the checks enforce.
const (
	maxPoolSize       = 64
	maxRingSize       = 8 * 1024 * 1024 // gRPC's cap
	defaultMinRing    = 1024
	defaultMaxRing    = 4096
	minRetryAttempts  = 2
	maxRetryAttempts  = 5 // gRPC caps retries at 5 attempts
	minChoiceCount    = 2
	maxChoiceCount    = 10
	maxTableSize      = 4194301 // consistenthash.MaxTableSize
	defaultBackoff    = 100 * time.Millisecond
	defaultMaxBackoff = time.Second
	defaultMultiplier = 2.0
)

// errorList collects every problem of a run, each naming its file and
// element.
type errorList []error

func (l *errorList) add(f *protogen.File, elem protoreflect.FullName, format string, args ...any) {
	*l = append(*l, fmt.Errorf("%s: %s: %s", f.Desc.Path(), elem, fmt.Sprintf(format, args...)))
}

func (l errorList) err() error { return errors.Join(l...) }

type fileModel struct {
	file     *protogen.File
	services []*serviceModel
}

type serviceModel struct {
	service      *protogen.Service
	registryName string
	discovery    discoveryModel
	failure      *failureModel    // nil: the backend's default
	connection   *connectionModel // nil: grpc-go's defaults
	policy       lbpb.Policy
	rules        *lbpb.ServiceRules // for the policy parameters
	poolSize     uint32
	methods      []*methodModel
}

// discoveryModel holds exactly one backend.
type discoveryModel struct {
	static []string
	dns    *dnsModel
	etcd   *etcdModel
	consul *consulModel
}

type consulModel struct {
	address, datacenter, near string
	tags                      []string
	includeFailing, failFast  bool
	grace, checkInterval      time.Duration
	deregisterAfter, ttl      time.Duration
	grpcUseTLS                bool
	tlsServerName             string
}

type etcdModel struct {
	endpoints                 []string
	prefix                    string
	ttl                       time.Duration
	plain                     bool
	caFile, certFile, keyFile string
}

type failureModel struct {
	mode         lbpb.RegistryFailure_Mode
	maxStaleness time.Duration
	fallback     []string
}

type dnsModel struct {
	host    string
	port    uint32
	srv     bool
	refresh time.Duration
	server  string
}

type methodModel struct {
	method       *protogen.Method
	timeout      time.Duration
	retry        *retryModel
	hashKey      string
	idempotent   bool
	waitForReady bool
	hedging      *hedgingModel
}

type hedgingModel struct {
	maxAttempts uint32
	delay       time.Duration
}

type retryModel struct {
	maxAttempts    uint32
	initialBackoff time.Duration
	maxBackoff     time.Duration
	multiplier     float64
	codes          []codes.Code
}

// readFile returns the model of f's annotated services, or nil when it has
// none. Problems go to errs.
func readFile(f *protogen.File, errs *errorList) *fileModel {
	m := &fileModel{file: f}
	for _, s := range f.Services {
		rules, _ := proto.GetExtension(s.Desc.Options(), lbpb.E_Service).(*lbpb.ServiceRules)
		if rules == nil {
			for _, meth := range s.Methods {
				if methodRules(meth) != nil {
					errs.add(f, meth.Desc.FullName(), "(lb.method) needs (lb.service) on %s", s.Desc.FullName())
				}
			}
			continue
		}
		m.services = append(m.services, readService(f, s, rules, errs))
	}
	if len(m.services) == 0 {
		return nil
	}
	return m
}

func methodRules(m *protogen.Method) *lbpb.MethodRules {
	r, _ := proto.GetExtension(m.Desc.Options(), lbpb.E_Method).(*lbpb.MethodRules)
	return r
}

func readService(f *protogen.File, s *protogen.Service, rules *lbpb.ServiceRules, errs *errorList) *serviceModel {
	name := s.Desc.FullName()
	bad := func(format string, args ...any) { errs.add(f, name, format, args...) }
	m := &serviceModel{service: s, registryName: string(name), rules: rules, poolSize: rules.GetPoolSize()}
	if n := rules.GetName(); n != "" {
		m.registryName = n
	}
	m.discovery = readDiscovery(rules.GetDiscovery(), bad)
	// A name every client of the backend can resolve: etcd keys take '/',
	// Consul service names do not.
	if err := discovery.CheckServiceName(m.registryName, m.discovery.etcd != nil); err != nil {
		field := "(lb.service).name"
		if rules.GetName() == "" {
			field = "the default (lb.service).name (the service's full name)"
		}
		bad("%s: %v", field, err)
	}
	m.failure = readFailure(rules.GetOnRegistryFailure(), bad)
	m.connection = readConnection(rules.GetConnection(), bad)
	readBudget(rules.GetRetryBudget(), bad)
	if c := m.discovery.consul; c != nil && m.failure != nil && (c.failFast || c.grace != 0) {
		bad("(lb.service).on_registry_failure and discovery.consul grace or fail_fast exclude each other: use on_registry_failure")
	}
	if m.poolSize > maxPoolSize {
		bad("(lb.service).pool_size %d is more than %d", m.poolSize, maxPoolSize)
	}
	m.policy = rules.GetPolicy()
	if m.policy == lbpb.Policy_POLICY_UNSPECIFIED {
		m.policy = lbpb.Policy_ROUND_ROBIN
	}
	checkPolicy(m.policy, rules, bad)
	if m.poolSize > 1 && m.policy == lbpb.Policy_PICK_FIRST {
		bad("(lb.service).pool_size %d under PICK_FIRST: pick_first calls one transport of one instance; choose a policy that spreads calls", m.poolSize)
	}
	for _, meth := range s.Methods {
		if mm := readMethod(f, meth, m.policy, rules.GetConsistentHash().GetMissingKey(), errs); mm != nil {
			m.methods = append(m.methods, mm)
		}
	}
	return m
}

func readDiscovery(d *lbpb.Discovery, bad func(string, ...any)) discoveryModel {
	var m discoveryModel
	switch b := d.GetBackend().(type) {
	case nil:
		bad("(lb.service).discovery is required: set one of static, dns, etcd, consul")
	case *lbpb.Discovery_Static:
		if len(b.Static.GetAddresses()) == 0 {
			bad("(lb.service).discovery.static.addresses is empty")
		}
		for i, a := range b.Static.GetAddresses() {
			addr, err := discovery.ParseAddress(a)
			if err != nil {
				bad("(lb.service).discovery.static.addresses[%d]: %v", i, err)
			}
			m.static = append(m.static, addr)
		}
	case *lbpb.Discovery_Dns:
		m.dns = readDNS(b.Dns, bad)
	case *lbpb.Discovery_Etcd:
		m.etcd = readEtcd(b.Etcd, bad)
	case *lbpb.Discovery_Consul:
		m.consul = readConsul(b.Consul, bad)
	}
	return m
}

func readFailure(r *lbpb.RegistryFailure, bad func(string, ...any)) *failureModel {
	if r == nil {
		return nil
	}
	const pre = "(lb.service).on_registry_failure."
	m := &failureModel{
		mode:         r.GetMode(),
		maxStaleness: positiveDuration(r.GetMaxStaleness(), pre+"max_staleness", bad),
	}
	if m.mode == lbpb.RegistryFailure_MODE_UNSPECIFIED {
		m.mode = lbpb.RegistryFailure_KEEP_LAST_GOOD
	}
	if _, ok := lbpb.RegistryFailure_Mode_name[int32(m.mode)]; !ok {
		bad(pre+"mode %d is not a known mode", m.mode)
	}
	if m.mode == lbpb.RegistryFailure_FAIL_FAST && r.GetMaxStaleness() != nil {
		bad(pre + "max_staleness does not apply to FAIL_FAST")
	}
	fallback := m.mode == lbpb.RegistryFailure_STATIC_FALLBACK
	switch n := len(r.GetFallbackAddresses()); {
	case fallback && n == 0:
		bad(pre + "fallback_addresses is required with STATIC_FALLBACK")
	case !fallback && n > 0:
		bad(pre+"fallback_addresses is set but the mode is %s: it goes with STATIC_FALLBACK", m.mode)
	}
	for i, a := range r.GetFallbackAddresses() {
		addr, err := discovery.ParseAddress(a)
		if err != nil {
			bad(pre+"fallback_addresses[%d]: %v", i, err)
		}
		m.fallback = append(m.fallback, addr)
	}
	return m
}

const minLeaseTTL = 2 * time.Second

func readEtcd(e *lbpb.Etcd, bad func(string, ...any)) *etcdModel {
	const pre = "(lb.service).discovery.etcd."
	m := &etcdModel{prefix: e.GetPrefix(), plain: e.GetPlainValue(), caFile: e.GetCaCertFile(), certFile: e.GetCertFile(), keyFile: e.GetKeyFile()}
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
		m.endpoints = append(m.endpoints, addr)
	}
	if len(schemes) > 1 {
		bad(pre + "endpoints mix https and plaintext: use one")
	}
	if (m.certFile == "") != (m.keyFile == "") {
		bad(pre + "cert_file and key_file go together: set both or neither")
	}
	if m.prefix != "" && (m.prefix[0] != '/' || strings.ContainsAny(m.prefix, " \t\r\n")) {
		bad(pre+"prefix %q must start with '/' and have no spaces", m.prefix)
	}
	m.ttl = positiveDuration(e.GetLeaseTtl(), pre+"lease_ttl", bad)
	if m.ttl != 0 && (m.ttl < minLeaseTTL || m.ttl%time.Second != 0) {
		bad(pre+"lease_ttl %v must be whole seconds, at least %v", m.ttl, minLeaseTTL)
	}
	return m
}

func readConsul(c *lbpb.Consul, bad func(string, ...any)) *consulModel {
	const pre = "(lb.service).discovery.consul."
	m := &consulModel{
		address:         c.GetAddress(),
		datacenter:      c.GetDatacenter(),
		near:            c.GetNear(),
		tags:            c.GetTags(),
		includeFailing:  c.PassingOnly != nil && !c.GetPassingOnly(),
		failFast:        c.GetFailFast(),
		grace:           positiveDuration(c.GetGrace(), pre+"grace", bad),
		checkInterval:   positiveDuration(c.GetCheckInterval(), pre+"check_interval", bad),
		deregisterAfter: positiveDuration(c.GetDeregisterCriticalAfter(), pre+"deregister_critical_after", bad),
		ttl:             positiveDuration(c.GetTtl(), pre+"ttl", bad),
		grpcUseTLS:      c.GetGrpcUseTls(),
		tlsServerName:   c.GetTlsServerName(),
	}
	if m.tlsServerName != "" && !m.grpcUseTLS {
		bad(pre + "tls_server_name needs grpc_use_tls")
	}
	if m.address != "" {
		if _, err := discovery.ParseAddress(m.address); err != nil {
			bad(pre+"address: %v", err)
		}
	}
	for i, t := range m.tags {
		if t == "" || strings.ContainsAny(t, " \t\r\n") {
			bad(pre+"tags[%d] %q must be non-empty, without spaces", i, t)
		}
	}
	if m.failFast && c.GetGrace() != nil {
		bad(pre + "grace and fail_fast exclude each other")
	}
	return m
}

var hostnameRE = regexp.MustCompile(`^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_.])?$`)

func readDNS(d *lbpb.DNS, bad func(string, ...any)) *dnsModel {
	m := &dnsModel{host: d.GetHost(), port: d.GetPort(), srv: d.GetRecord() == lbpb.DNS_SRV, server: d.GetServer()}
	switch {
	case m.host == "":
		bad("(lb.service).discovery.dns.host is required")
	case !hostnameRE.MatchString(m.host):
		bad("(lb.service).discovery.dns.host %q is not a DNS name", m.host)
	}
	switch r := d.GetRecord(); {
	case r != lbpb.DNS_RECORD_TYPE_UNSPECIFIED && r != lbpb.DNS_A && r != lbpb.DNS_SRV:
		bad("(lb.service).discovery.dns.record %d is not A or SRV", r)
	case m.srv && m.port != 0:
		bad("(lb.service).discovery.dns.port must be unset with record SRV: the SRV records give the ports")
	case !m.srv && (m.port == 0 || m.port > math.MaxUint16):
		bad("(lb.service).discovery.dns.port %d is not in 1-65535 (required for A records)", m.port)
	}
	m.refresh = positiveDuration(d.GetRefreshInterval(), "(lb.service).discovery.dns.refresh_interval", bad)
	if m.server != "" {
		if _, err := discovery.ParseAddress(m.server); err != nil {
			bad("(lb.service).discovery.dns.server: %v", err)
		}
	}
	return m
}

// positiveDuration returns d, reporting it when it is set but not a valid,
// positive duration.
func positiveDuration(d *durationpb.Duration, what string, bad func(string, ...any)) time.Duration {
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

// policyParams maps each policy with parameters to the name of its
// parameters field.
var policyParams = map[lbpb.Policy]string{
	lbpb.Policy_RING_HASH:            "ring_hash",
	lbpb.Policy_P2C_EWMA:             "p2c_ewma",
	lbpb.Policy_LEAST_REQUEST:        "least_request",
	lbpb.Policy_WEIGHTED_ROUND_ROBIN: "weighted_round_robin",
	lbpb.Policy_CONSISTENT_HASH:      "consistent_hash",
}

func checkPolicy(p lbpb.Policy, rules *lbpb.ServiceRules, bad func(string, ...any)) {
	if _, ok := lbpb.Policy_name[int32(p)]; !ok {
		bad("(lb.service).policy %d is not a known policy", p)
		return
	}
	if params := rules.GetPolicyParams(); params != nil {
		field := rules.ProtoReflect().WhichOneof(rules.ProtoReflect().Descriptor().Oneofs().ByName("policy_params"))
		if policyParams[p] != string(field.Name()) {
			bad("(lb.service).%s is set but the policy is %s", field.Name(), p)
			return
		}
	}
	const pre = "(lb.service)."
	switch p {
	case lbpb.Policy_RING_HASH:
		lo, hi := rules.GetRingHash().GetMinRingSize(), rules.GetRingHash().GetMaxRingSize()
		if lo > maxRingSize || hi > maxRingSize {
			bad(pre+"ring_hash: ring sizes must be at most %d", maxRingSize)
		}
		if lo == 0 {
			lo = defaultMinRing
		}
		if hi == 0 {
			hi = defaultMaxRing
		}
		if lo > hi {
			bad(pre+"ring_hash.min_ring_size %d is more than max_ring_size %d", lo, hi)
		}
	case lbpb.Policy_CONSISTENT_HASH:
		c := rules.GetConsistentHash()
		if n := c.GetTableSize(); n != 0 && (n > maxTableSize || !new(big.Int).SetUint64(n).ProbablyPrime(0)) {
			bad(pre+"consistent_hash.table_size %d must be a prime of at most %d", n, maxTableSize)
		}
		if b := c.GetLoadBound(); b != 0 && !(b >= 1 && !math.IsInf(b, 1)) {
			bad(pre+"consistent_hash.load_bound %v must be at least 1, or 0 for no bound", b)
		}
		if _, ok := lbpb.ConsistentHash_MissingKey_name[int32(c.GetMissingKey())]; !ok {
			bad(pre+"consistent_hash.missing_key %d is not a known choice", c.GetMissingKey())
		}
	case lbpb.Policy_P2C_EWMA:
		positiveDuration(rules.GetP2CEwma().GetDecay(), pre+"p2c_ewma.decay", bad)
		positiveDuration(rules.GetP2CEwma().GetProbe(), pre+"p2c_ewma.probe", bad)
	case lbpb.Policy_LEAST_REQUEST:
		if n := rules.GetLeastRequest().GetChoiceCount(); n != 0 && (n < minChoiceCount || n > maxChoiceCount) {
			bad(pre+"least_request.choice_count %d is not in %d-%d", n, minChoiceCount, maxChoiceCount)
		}
	case lbpb.Policy_WEIGHTED_ROUND_ROBIN:
		if rules.GetWeightedRoundRobin() != nil {
			bad(pre + "weighted_round_robin: weighting by ORCA load reports needs servers that send them, and the generated server does not; without these parameters WEIGHTED_ROUND_ROBIN weighs by the registry's weights")
		}
		w := rules.GetWeightedRoundRobin()
		positiveDuration(w.GetOobReportingPeriod(), pre+"weighted_round_robin.oob_reporting_period", bad)
		positiveDuration(w.GetBlackoutPeriod(), pre+"weighted_round_robin.blackout_period", bad)
		positiveDuration(w.GetWeightExpirationPeriod(), pre+"weighted_round_robin.weight_expiration_period", bad)
		positiveDuration(w.GetWeightUpdatePeriod(), pre+"weighted_round_robin.weight_update_period", bad)
		if p := w.GetErrorUtilizationPenalty(); p < 0 || math.IsNaN(float64(p)) || math.IsInf(float64(p), 0) {
			bad(pre+"weighted_round_robin.error_utilization_penalty %v must be a finite number, not negative", p)
		}
	}
}

func readMethod(f *protogen.File, meth *protogen.Method, policy lbpb.Policy, missingKey lbpb.ConsistentHash_MissingKey, errs *errorList) *methodModel {
	name := meth.Desc.FullName()
	bad := func(format string, args ...any) { errs.add(f, name, format, args...) }
	rules := methodRules(meth)
	m := &methodModel{method: meth, hashKey: rules.GetHashKey()}
	switch meth.Desc.Options().(*descriptorpb.MethodOptions).GetIdempotencyLevel() {
	case descriptorpb.MethodOptions_IDEMPOTENT, descriptorpb.MethodOptions_NO_SIDE_EFFECTS:
		m.idempotent = true
	}
	if rules != nil && rules.Idempotent != nil {
		m.idempotent = rules.GetIdempotent()
	}
	m.timeout = positiveDuration(rules.GetTimeout(), "(lb.method).timeout", bad)
	if rules.GetRetry() != nil {
		m.retry = readRetry(rules.GetRetry(), m.idempotent, bad)
	}
	unary := !meth.Desc.IsStreamingClient() && !meth.Desc.IsStreamingServer()
	m.waitForReady = rules.GetWaitForReady()
	if h := rules.GetHedging(); h != nil {
		const pre = "(lb.method).hedging"
		m.hedging = &hedgingModel{maxAttempts: h.GetMaxAttempts(), delay: positiveDuration(h.GetDelay(), pre+".delay", bad)}
		switch {
		case !unary:
			bad(pre + " on a streaming method: only unary calls are hedged")
		case !m.idempotent:
			bad(pre + " on a method that is not idempotent: a hedged call may run more than once; set idempotency_level = IDEMPOTENT (or NO_SIDE_EFFECTS), or (lb.method).idempotent")
		case m.retry != nil:
			bad(pre + " and (lb.method).retry exclude each other (gRFC A6): hedging retries by itself")
		case policy == lbpb.Policy_PICK_FIRST || policy == lbpb.Policy_CONSISTENT_HASH || policy == lbpb.Policy_RING_HASH:
			bad(pre+" under %s: each hedge goes to another instance, and this policy sends a call to one", policy)
		}
		if n := h.GetMaxAttempts(); n < minRetryAttempts || n > maxRetryAttempts {
			bad(pre+".max_attempts %d is not in %d-%d", n, minRetryAttempts, maxRetryAttempts)
		}
		if h.GetDelay() == nil {
			bad(pre + ".delay is required")
		}
	}
	switch {
	case m.hashKey != "" && policy != lbpb.Policy_RING_HASH && policy != lbpb.Policy_CONSISTENT_HASH:
		bad("(lb.method).hash_key is set but the service's policy is %s: hash_key only applies to CONSISTENT_HASH and RING_HASH", policy)
	case m.hashKey != "" && !unary:
		bad("(lb.method).hash_key on a streaming method: the instance is picked before the first message is sent; set the lb-hash-key header (lb.HashKeyHeader) in the call's context instead, or under CONSISTENT_HASH consistenthash.WithKey")
	case m.hashKey != "":
		checkFieldPath(meth.Input, m.hashKey, bad)
	case policy == lbpb.Policy_RING_HASH && unary:
		bad("(lb.method).hash_key is required: the service's policy is RING_HASH")
	case policy == lbpb.Policy_CONSISTENT_HASH && unary && missingKey == lbpb.ConsistentHash_FAIL:
		bad("(lb.method).hash_key is required: the service's policy is CONSISTENT_HASH with missing_key FAIL, so every call without a key would fail")
	}
	if m.timeout == 0 && m.retry == nil && m.hashKey == "" && !m.idempotent && !m.waitForReady && m.hedging == nil {
		return nil
	}
	return m
}

// readBudget checks (lb.service).retry_budget.
func readBudget(b *lbpb.RetryBudget, bad func(string, ...any)) {
	const pre = "(lb.service).retry_budget."
	if n := b.GetMaxTokens(); n != 0 && n > 1000 {
		bad(pre+"max_tokens %d is more than 1000", n)
	}
	if r := b.GetTokenRatio(); r != 0 && !(r > 0 && r <= 1) {
		bad(pre+"token_ratio %v is not in (0, 1]", r)
	}
}

func readRetry(r *lbpb.Retry, idempotent bool, bad func(string, ...any)) *retryModel {
	const pre = "(lb.method).retry."
	m := &retryModel{
		maxAttempts:    r.GetMaxAttempts(),
		initialBackoff: positiveDuration(r.GetInitialBackoff(), pre+"initial_backoff", bad),
		maxBackoff:     positiveDuration(r.GetMaxBackoff(), pre+"max_backoff", bad),
		multiplier:     r.GetBackoffMultiplier(),
	}
	if m.maxAttempts < minRetryAttempts || m.maxAttempts > maxRetryAttempts {
		bad(pre+"max_attempts %d is not in %d-%d", m.maxAttempts, minRetryAttempts, maxRetryAttempts)
	}
	if m.initialBackoff == 0 {
		m.initialBackoff = defaultBackoff
	}
	if m.maxBackoff == 0 {
		m.maxBackoff = max(defaultMaxBackoff, m.initialBackoff)
	}
	if m.initialBackoff > m.maxBackoff {
		bad(pre+"initial_backoff %v is more than max_backoff %v", m.initialBackoff, m.maxBackoff)
	}
	switch {
	case m.multiplier == 0:
		m.multiplier = defaultMultiplier
	case m.multiplier < 0 || math.IsNaN(m.multiplier) || math.IsInf(m.multiplier, 0):
		bad(pre+"backoff_multiplier %v must be a positive number", m.multiplier)
	}
	names := r.GetRetryableCodes()
	if len(names) == 0 {
		names = []string{"UNAVAILABLE"}
	}
	for _, n := range names {
		var c codes.Code
		if err := c.UnmarshalJSON([]byte(strconv.Quote(n))); err != nil || c == codes.OK {
			bad(pre+"retryable_codes: %q is not a gRPC status code name other than OK (e.g. UNAVAILABLE)", n)
			continue
		}
		if c != codes.Unavailable && !idempotent {
			bad(pre+"retryable_codes: retrying on %s needs an idempotent method: set (lb.method).idempotent or the method's idempotency_level", n)
		}
		m.codes = append(m.codes, c)
	}
	return m
}

// checkFieldPath reports whether path names a singular scalar field of
// msg through singular message fields.
func checkFieldPath(msg *protogen.Message, path string, bad func(string, ...any)) {
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

// connectionModel is (lb.service).connection, checked.
type connectionModel struct {
	keepaliveTime, keepaliveTimeout, maxAge, maxAgeGrace, maxIdle time.Duration
}

// minKeepaliveTime is gRPC's least client ping interval (lb.MinKeepaliveTime).
const minKeepaliveTime = 10 * time.Second

func readConnection(c *lbpb.Connection, bad func(string, ...any)) *connectionModel {
	if c == nil {
		return nil
	}
	const pre = "(lb.service).connection."
	m := &connectionModel{
		keepaliveTime:    positiveDuration(c.GetKeepaliveTime(), pre+"keepalive_time", bad),
		keepaliveTimeout: positiveDuration(c.GetKeepaliveTimeout(), pre+"keepalive_timeout", bad),
		maxAge:           positiveDuration(c.GetMaxConnectionAge(), pre+"max_connection_age", bad),
		maxAgeGrace:      positiveDuration(c.GetMaxConnectionAgeGrace(), pre+"max_connection_age_grace", bad),
		maxIdle:          positiveDuration(c.GetMaxConnectionIdle(), pre+"max_connection_idle", bad),
	}
	if m.keepaliveTime != 0 && m.keepaliveTime < minKeepaliveTime {
		bad(pre+"keepalive_time %v is less than gRPC's minimum %v (grpc-go would ping every %v anyway)", m.keepaliveTime, minKeepaliveTime, minKeepaliveTime)
	}
	if m.keepaliveTimeout != 0 && m.keepaliveTime == 0 {
		bad(pre + "keepalive_timeout needs keepalive_time")
	}
	if m.maxAge != 0 && m.maxAge < time.Second {
		bad(pre+"max_connection_age %v is less than 1s", m.maxAge)
	}
	if m.maxAgeGrace != 0 && m.maxAge == 0 {
		bad(pre + "max_connection_age_grace needs max_connection_age")
	}
	if m.maxIdle != 0 && m.maxIdle < time.Second {
		bad(pre+"max_connection_idle %v is less than 1s", m.maxIdle)
	}
	return m
}

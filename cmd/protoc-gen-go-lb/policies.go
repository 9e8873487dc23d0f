package main

import (
	"cmp"
	"maps"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/reflect/protoreflect"

	lbpb "github.com/protoc-gen-go-lb/protoc-gen-go-lb/proto/lb"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/consistenthash"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/leastrequest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/p2cewma"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/pool"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/ringhash"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/weighted"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/lb"
)

// This file is what the plugin knows of the balancing policies: one row
// of one table each, and how a service's (lb.service).policy and its
// parameters become the policy's Config.

// policies is the policy table. Adding a policy to the plugin is a row
// here plus, in proto/lb/options.proto, its Policy value and, if it has
// parameters, their message in the policy_params oneof; its package's
// Config says what it accepts (Validate) and is what the generated code
// writes. The templates need nothing new.
var policies = []*policy{
	{enum: lbpb.Policy_PICK_FIRST, pkg: "pickfirst", oneInstance: true,
		noPool:      "pick_first calls one transport of one instance; choose a policy that spreads calls",
		noSlowStart: "every call goes to one instance, so there is nothing to ramp",
		noZoneAware: "every call goes to one instance, and pick_first's own order says which"},
	{enum: lbpb.Policy_ROUND_ROBIN, pkg: "roundrobin"},
	{enum: lbpb.Policy_RANDOM, pkg: "random"},
	{enum: lbpb.Policy_P2C_EWMA, pkg: "p2cewma", params: "p2c_ewma", config: p2cEWMAConfig},
	{enum: lbpb.Policy_LEAST_REQUEST, pkg: "leastrequest", params: "least_request", config: leastRequestConfig},
	{enum: lbpb.Policy_RING_HASH, pkg: "ringhash", params: "ring_hash", config: ringHashConfig, hashes: true, oneInstance: true,
		noSlowStart: noRampForKeys, noZoneAware: noLevelsForKeys},
	{enum: lbpb.Policy_WEIGHTED_ROUND_ROBIN, pkg: "weighted", params: "weighted_round_robin", config: weightedConfig},
	{enum: lbpb.Policy_CONSISTENT_HASH, pkg: "consistenthash", params: "consistent_hash", config: consistentHashConfig, hashes: true, oneInstance: true,
		noSlowStart: noRampForKeys, noZoneAware: noLevelsForKeys},
}

// noRampForKeys is why the hashing policies take no slow start.
const noRampForKeys = "each key belongs to one instance, and a ramp would move keys off a new instance and back as it warms"

// noLevelsForKeys is why the hashing policies take no zone-aware routing.
const noLevelsForKeys = "each key belongs to one instance wherever it is, and levels would move keys between zones as their health changes"

// defaultPolicy is the policy of a service that names none.
const defaultPolicy = lbpb.Policy_ROUND_ROBIN

// policy is a row of the policy table: a policy's traits.
type policy struct {
	enum lbpb.Policy
	// pkg is the package under runtime/balancer whose Config the
	// generated code names.
	pkg string
	// params is the field of (lb.service)'s policy_params oneof that holds
	// the policy's parameters; "" when it has none.
	params protoreflect.Name
	// config reads the parameters into the package's Config; nil for a
	// policy without parameters, whose Config is empty.
	config func(*lbpb.ServiceRules, badFunc) policyConfig
	// hashes: each call goes to the instance its key hashes to, so
	// (lb.method).hash_key applies.
	hashes bool
	// oneInstance: each call goes to one instance (its key's, or the one
	// connected), so hedging, which sends attempts to others, does not
	// apply.
	oneInstance bool
	// noPool says why a pool of connections to each instance does not
	// apply; "" when it does.
	noPool string
	// noSlowStart says why (lb.service).slow_start does not apply; ""
	// when it does.
	noSlowStart string
	// noZoneAware says why (lb.service).zone_aware does not apply; ""
	// when it does.
	noZoneAware string
}

// policyConfig is what a policy's parameters come to.
type policyConfig struct {
	// config is the Config the generated code writes; the plugin calls its
	// Validate, if it has one.
	config lb.Balancer
	// fields are config's fields as the literal names them, zero or not
	// (zero ones are left out of it), in its order.
	fields []field
	// keyRequired says why each unary call needs a (lb.method).hash_key;
	// "" when it does not.
	keyRequired string
}

type badFunc = func(format string, args ...any)

func lookupPolicy(p lbpb.Policy) *policy {
	i := slices.IndexFunc(policies, func(row *policy) bool { return row.enum == p })
	if i < 0 {
		return nil
	}
	return policies[i]
}

// hashingPolicies lists the policies that hash, for messages:
// "CONSISTENT_HASH and RING_HASH".
func hashingPolicies() string {
	var names []string
	for _, p := range policies {
		if p.hashes {
			names = append(names, p.enum.String())
		}
	}
	slices.Sort(names)
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// readPolicy returns the model of the service's policy and its
// parameters, or nil when the policy is unknown.
func readPolicy(rules *lbpb.ServiceRules, bad badFunc) *balancerModel {
	p := rules.GetPolicy()
	if p == lbpb.Policy_POLICY_UNSPECIFIED {
		p = defaultPolicy
	}
	row := lookupPolicy(p)
	if row == nil {
		bad("(lb.service).policy %d is not a known policy", p)
		return nil
	}
	m := &balancerModel{policy: row, Type: protogen.GoImportPath(balancerPackages + row.pkg).Ident("Config")}
	if rules.GetPolicyParams() != nil {
		r := rules.ProtoReflect()
		set := r.WhichOneof(r.Descriptor().Oneofs().ByName("policy_params")).Name()
		if set != row.params {
			bad("(lb.service).%s is set but the policy is %s", set, p)
		}
	}
	if row.config == nil {
		return m
	}
	c := row.config(rules, bad)
	m.keyRequired = c.keyRequired
	for _, f := range c.fields {
		if !reflect.ValueOf(f.Value).IsZero() {
			m.Fields = append(m.Fields, f)
		}
	}
	if v, ok := c.config.(interface{ Validate() error }); ok {
		names := map[string]string{}
		fields := rules.ProtoReflect().Descriptor().Fields().ByName(row.params).Message().Fields()
		for i := range fields.Len() {
			names[fields.Get(i).JSONName()] = string(fields.Get(i).Name())
		}
		runtimeErrors(v.Validate(), c.config.BalancerName(), "(lb.service)."+string(row.params), names, bad)
	}
	return m
}

// checkPoolSize reports a pool_size the pool refuses.
func checkPoolSize(size uint32, bad badFunc) {
	if size == 0 {
		return
	}
	c := pool.Config{Size: int(min(size, math.MaxInt32))}
	runtimeErrors(c.Validate(), pool.Name, "(lb.service)", map[string]string{"size": "pool_size"}, bad)
}

// checkPoolPolicy reports a pool under a policy (nil when unknown) that
// cannot use one.
func checkPoolPolicy(size uint32, m *balancerModel, bad badFunc) {
	if size > 1 && m != nil && m.policy.noPool != "" {
		bad("(lb.service).pool_size %d under %s: %s", size, m.policy.enum, m.policy.noPool)
	}
}

// runtimeErrors reports the errors of a runtime Config's Validate in the
// terms of the options. The runtime names a setting by its name in the
// service config's JSON ("ring_hash_experimental: minRingSize 5000 is
// more than maxRingSize 100") or in words ("outlier: max ejected percent
// 150 is not in 1-100"); names maps those names to the options that set
// them, relative to prefix, so the report names the option:
// "(lb.service).ring_hash.min_ring_size 5000 is more than max_ring_size
// 100".
func runtimeErrors(err error, policy, prefix string, names map[string]string, bad badFunc) {
	if err == nil {
		return
	}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	setting := settingNames(names)
	for _, err := range errs {
		msg := strings.TrimPrefix(err.Error(), policy+": ")
		if setting != nil {
			named := setting.FindStringIndex(msg)
			first := true
			msg = setting.ReplaceAllStringFunc(msg, func(w string) string {
				if first && named[0] == 0 {
					first = false
					return prefix + "." + names[w]
				}
				return names[w]
			})
		}
		if !strings.HasPrefix(msg, prefix+".") {
			msg = prefix + ": " + msg
		}
		bad("%s", msg)
	}
}

// settingNames matches the names of names as whole words, the longest
// first ("failure percentage threshold" before "threshold"); nil for none.
func settingNames(names map[string]string) *regexp.Regexp {
	if len(names) == 0 {
		return nil
	}
	keys := slices.SortedFunc(maps.Keys(names), func(a, b string) int {
		return cmp.Or(cmp.Compare(len(b), len(a)), strings.Compare(a, b))
	})
	for i, k := range keys {
		keys[i] = regexp.QuoteMeta(k)
	}
	return regexp.MustCompile(`\b(?:` + strings.Join(keys, "|") + `)\b`)
}

// The parameters of each policy, read into its Config.

func p2cEWMAConfig(r *lbpb.ServiceRules, bad badFunc) policyConfig {
	const pre = "(lb.service).p2c_ewma."
	p := r.GetP2CEwma()
	c := p2cewma.Config{
		Decay: positiveDuration(p.GetDecay(), pre+"decay", bad),
		Probe: positiveDuration(p.GetProbe(), pre+"probe", bad),
	}
	return policyConfig{config: c, fields: []field{{"Decay", c.Decay}, {"Probe", c.Probe}}}
}

func leastRequestConfig(r *lbpb.ServiceRules, _ badFunc) policyConfig {
	c := leastrequest.Config{ChoiceCount: r.GetLeastRequest().GetChoiceCount()}
	return policyConfig{config: c, fields: []field{{"ChoiceCount", c.ChoiceCount}}}
}

func ringHashConfig(r *lbpb.ServiceRules, _ badFunc) policyConfig {
	p := r.GetRingHash()
	c := ringhash.Config{MinRingSize: p.GetMinRingSize(), MaxRingSize: p.GetMaxRingSize()}
	return policyConfig{
		config:      c,
		fields:      []field{{"MinRingSize", c.MinRingSize}, {"MaxRingSize", c.MaxRingSize}},
		keyRequired: "the service's policy is RING_HASH",
	}
}

func consistentHashConfig(r *lbpb.ServiceRules, bad badFunc) policyConfig {
	p := r.GetConsistentHash()
	c := consistenthash.Config{TableSize: p.GetTableSize(), LoadBound: p.GetLoadBound()}
	var missing protogen.GoIdent // SpreadMissingKey, the zero value
	var keyRequired string
	switch p.GetMissingKey() {
	case lbpb.ConsistentHash_MISSING_KEY_UNSPECIFIED, lbpb.ConsistentHash_SPREAD:
	case lbpb.ConsistentHash_FAIL:
		c.MissingKey = consistenthash.FailMissingKey
		missing = protogen.GoImportPath(balancerPackages + "consistenthash").Ident("FailMissingKey")
		keyRequired = "the service's policy is CONSISTENT_HASH with missing_key FAIL, so every call without a key would fail"
	default:
		bad("(lb.service).consistent_hash.missing_key %d is not a known choice", p.GetMissingKey())
	}
	return policyConfig{
		config:      c,
		fields:      []field{{"TableSize", c.TableSize}, {"LoadBound", c.LoadBound}, {"MissingKey", missing}},
		keyRequired: keyRequired,
	}
}

// weightedConfig refuses the parameters of WEIGHTED_ROUND_ROBIN, which
// are those of grpc-go's ORCA-weighted round robin, checking them all the
// same.
func weightedConfig(r *lbpb.ServiceRules, bad badFunc) policyConfig {
	const pre = "(lb.service).weighted_round_robin"
	if w := r.GetWeightedRoundRobin(); w != nil {
		bad(pre + ": weighting by ORCA load reports needs servers that send them, and the generated server does not; without these parameters WEIGHTED_ROUND_ROBIN weighs by the registry's weights")
		positiveDuration(w.GetOobReportingPeriod(), pre+".oob_reporting_period", bad)
		positiveDuration(w.GetBlackoutPeriod(), pre+".blackout_period", bad)
		positiveDuration(w.GetWeightExpirationPeriod(), pre+".weight_expiration_period", bad)
		positiveDuration(w.GetWeightUpdatePeriod(), pre+".weight_update_period", bad)
		if p := w.GetErrorUtilizationPenalty(); p < 0 || math.IsNaN(float64(p)) || math.IsInf(float64(p), 0) {
			bad(pre+".error_utilization_penalty %v must be a finite number, not negative", p)
		}
	}
	return policyConfig{config: weighted.Config{}}
}

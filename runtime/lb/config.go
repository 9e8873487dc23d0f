package lb

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"time"

	"google.golang.org/grpc/balancer"
	_ "google.golang.org/grpc/balancer/weightedroundrobin" // weighted_round_robin
	"google.golang.org/grpc/codes"
)

// params returns a balancer config from key, value pairs, leaving out zero
// values so that gRPC's defaults apply.
func params(kv ...any) map[string]any {
	m := map[string]any{}
	for i := 0; i < len(kv); i += 2 {
		if v := kv[i+1]; v != nil && !reflect.ValueOf(v).IsZero() {
			m[kv[i].(string)] = v
		}
	}
	return m
}

// duration formats d as a service-config duration; zero is nil, left out of
// the config so that gRPC's default applies.
func duration(d time.Duration) any {
	if d == 0 {
		return nil
	}
	return fmt.Sprintf("%.9fs", d.Seconds())
}

type methodName struct {
	Service string `json:"service"`
	Method  string `json:"method,omitempty"`
}

type retryPolicy struct {
	MaxAttempts          int          `json:"maxAttempts"`
	InitialBackoff       any          `json:"initialBackoff"`
	MaxBackoff           any          `json:"maxBackoff"`
	BackoffMultiplier    float64      `json:"backoffMultiplier"`
	RetryableStatusCodes []codes.Code `json:"retryableStatusCodes"`
}

type methodConfig struct {
	Name         []methodName `json:"name"`
	Timeout      any          `json:"timeout,omitempty"`
	WaitForReady bool         `json:"waitForReady,omitempty"`
	RetryPolicy  *retryPolicy `json:"retryPolicy,omitempty"`
}

type retryThrottling struct {
	MaxTokens  int     `json:"maxTokens"`
	TokenRatio float64 `json:"tokenRatio"`
}

// budget returns svc's retry budget, or nil when it has none: no method
// retries or hedges, or it is disabled.
func budget(svc *Service) *RetryBudget {
	uses := false
	for _, m := range svc.Methods {
		uses = uses || retryOf(m) != nil || m.Hedging != nil
	}
	if !uses {
		return nil
	}
	b := DefaultRetryBudget
	if svc.RetryBudget != nil {
		b = *svc.RetryBudget
		if b.MaxTokens == 0 {
			b.MaxTokens = DefaultRetryBudget.MaxTokens
		}
		if b.TokenRatio == 0 {
			b.TokenRatio = DefaultRetryBudget.TokenRatio
		}
	}
	if b.Disabled {
		return nil
	}
	return &b
}

// retryOf returns m's retry policy: its own, or DefaultRetry for an
// idempotent method that does not hedge.
func retryOf(m Method) *Retry {
	switch {
	case m.Retry != nil:
		return m.Retry
	case m.Idempotent && m.Hedging == nil:
		return &DefaultRetry
	}
	return nil
}

// ServiceConfig returns the gRPC service config JSON of svc: its balancing
// policy, a client-side health check of its health service, and a method
// config for every method with a timeout or retry policy. It fails if the
// balancing policy is not registered in this binary.
//
// Under ZoneAware, the client's locality is ZoneEnv and RegionEnv.
func ServiceConfig(svc *Service) (string, error) {
	return serviceConfig(svc, clientEnv{Locality: localityFromEnv()})
}

// clientEnv is what a client says of itself that the layers read: where
// it is, and its index among count clients (count 0: unknown).
type clientEnv struct {
	Locality
	index, count int
}

// serviceConfig is ServiceConfig for the client env describes.
func serviceConfig(svc *Service, env clientEnv) (string, error) {
	b := svc.Balancer
	if b == nil {
		b = RoundRobin{}
	}
	if v := reflect.ValueOf(b); v.Kind() == reflect.Pointer && v.IsNil() {
		return "", fmt.Errorf("lb: %s: the balancing policy is a nil %T", svc.FullName, b)
	}
	name, cfg := b.BalancerName(), b.BalancerConfig()
	if len(svc.Streams) > 0 {
		// p2c_ewma does not take a stream's duration for a latency.
		var p P2CEWMA
		ok := true
		switch v := b.(type) {
		case P2CEWMA:
			p = v
		case *P2CEWMA:
			p = *v
		default:
			ok = false
		}
		if ok && p.Streams == nil {
			for _, m := range svc.Streams {
				p.Streams = append(p.Streams, "/"+svc.FullName+"/"+m)
			}
			cfg = p.BalancerConfig()
		}
	}
	if err := checkRegistered(name); err != nil {
		return "", fmt.Errorf("lb: %s: %w", svc.FullName, err)
	}
	sc := struct {
		LoadBalancingConfig []map[string]any  `json:"loadBalancingConfig"`
		HealthCheckConfig   map[string]string `json:"healthCheckConfig,omitempty"`
		RetryThrottling     *retryThrottling  `json:"retryThrottling,omitempty"`
		MethodConfig        []methodConfig    `json:"methodConfig,omitempty"`
	}{
		LoadBalancingConfig: []map[string]any{{name: cfg}},
	}
	if !svc.DisableHealthCheck {
		sc.HealthCheckConfig = map[string]string{"serviceName": svc.FullName}
	}
	if b := budget(svc); b != nil {
		sc.RetryThrottling = &retryThrottling{MaxTokens: b.MaxTokens, TokenRatio: b.TokenRatio}
	}
	lbc, err := wrapPolicy(svc, name, map[string]any{name: cfg}, env)
	if err != nil {
		return "", fmt.Errorf("lb: %s: %w", svc.FullName, err)
	}
	sc.LoadBalancingConfig = []map[string]any{lbc}
	for _, m := range svc.Methods {
		mc := methodConfig{
			Name:         []methodName{{Service: svc.FullName, Method: m.Name}},
			Timeout:      duration(m.Timeout),
			WaitForReady: m.WaitForReady,
		}
		if r := retryOf(m); r != nil {
			mc.RetryPolicy = &retryPolicy{
				MaxAttempts:       r.MaxAttempts,
				InitialBackoff:    duration(r.InitialBackoff),
				MaxBackoff:        duration(r.MaxBackoff),
				BackoffMultiplier: r.BackoffMultiplier,
			}
			mc.RetryPolicy.RetryableStatusCodes = r.RetryableCodes
		}
		if mc.Timeout == nil && mc.RetryPolicy == nil && !mc.WaitForReady {
			continue
		}
		sc.MethodConfig = append(sc.MethodConfig, mc)
	}
	out, err := json.Marshal(sc)
	if err != nil {
		return "", fmt.Errorf("lb: %s: service config: %w", svc.FullName, err)
	}
	return string(out), nil
}

// checkRegistered fails when no balancer is registered in grpc-go under
// name, or when a policy name of this module ("lb_" names are reserved for
// the packages under runtime/balancer) is registered by another package:
// grpc-go keeps one balancer per name and the last registration wins, so a
// library registering our name would silently take our calls. The wrappers
// a service config puts around the policy (lb_pool, lb_hedge) are checked
// as the policy is.
func checkRegistered(name string) error {
	built := balancer.Get(name)
	if built == nil {
		return fmt.Errorf("balancing policy %q is not available in this runtime (v%s)", name, Version)
	}
	if !strings.HasPrefix(name, "lb_") {
		return nil // a user's own policy, or one of grpc-go's
	}
	impl := reflect.TypeOf(built)
	if impl.Kind() == reflect.Pointer {
		impl = impl.Elem()
	}
	if !strings.HasPrefix(impl.PkgPath(), balancerPackages) {
		return fmt.Errorf("balancing policy %q is registered by %s, which replaced this module's (names starting with lb_ are reserved for runtime/balancer): grpc-go keeps the last registration of a name", name, impl.PkgPath())
	}
	return nil
}

// balancerPackages is the import path prefix of this module's policies.
const balancerPackages = "github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/"

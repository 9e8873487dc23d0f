package main

import (
	"math"
	"time"

	lbpb "github.com/protoc-gen-go-lb/protoc-gen-go-lb/proto/lb"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/locality"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/outlier"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/slowstart"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/subset"
)

// This file reads the layers the runtime puts between the calls and the
// service's policy, (lb.service).outlier_ejection, slow_start, zone_aware
// and subset, into their models; their runtime Configs' Validate checks
// the ranges.

// outlierNames maps the settings outlier.Config.Validate names to the
// options that set them, under (lb.service).outlier_ejection.
var outlierNames = map[string]string{
	"consecutive failures":                "consecutive_failures",
	"interval":                            "interval",
	"base ejection time":                  "base_ejection_time",
	"max ejection time":                   "max_ejection_time",
	"max ejected percent":                 "max_ejected_percent",
	"failure percentage threshold":        "failure_percentage.threshold",
	"failure percentage minimum requests": "failure_percentage.minimum_requests",
	"failure code":                        "failure_codes",
}

// slowStartNames maps the settings slowstart.Config.Validate names to the
// options that set them, under (lb.service).slow_start.
var slowStartNames = map[string]string{
	"window":             "window",
	"aggression":         "aggression",
	"min weight percent": "min_weight_percent",
}

// readOutlier returns (lb.service).outlier_ejection, checked; nil when
// unset. An empty one is on, with the runtime's defaults.
func readOutlier(o *lbpb.OutlierEjection, bad badFunc) *outlierModel {
	if o == nil {
		return nil
	}
	const pre = "(lb.service).outlier_ejection"
	m := &outlierModel{
		ConsecutiveFailures: count(o.GetConsecutiveFailures(), pre+".consecutive_failures", bad),
		Interval:            positiveDuration(o.GetInterval(), pre+".interval", bad),
		BaseEjectionTime:    positiveDuration(o.GetBaseEjectionTime(), pre+".base_ejection_time", bad),
		MaxEjectionTime:     positiveDuration(o.GetMaxEjectionTime(), pre+".max_ejection_time", bad),
		MaxEjectedPercent:   count(o.GetMaxEjectedPercent(), pre+".max_ejected_percent", bad),
	}
	c := outlier.Config{
		Interval:          m.Interval,
		BaseEjectionTime:  m.BaseEjectionTime,
		MaxEjectionTime:   m.MaxEjectionTime,
		MaxEjectedPercent: m.MaxEjectedPercent,
	}
	if fp := o.GetFailurePercentage(); fp != nil {
		m.FailurePercentage = &failurePercentageModel{
			Threshold:       count(fp.GetThreshold(), pre+".failure_percentage.threshold", bad),
			MinimumRequests: count(fp.GetMinimumRequests(), pre+".failure_percentage.minimum_requests", bad),
		}
		c.FailurePercentage = &outlier.FailurePercentage{Threshold: m.FailurePercentage.Threshold, MinimumRequests: m.FailurePercentage.MinimumRequests}
	}
	if o.GetDisableConsecutiveFailures() {
		if o.GetConsecutiveFailures() != 0 {
			bad(pre + ".consecutive_failures and disable_consecutive_failures exclude each other")
		}
		m.ConsecutiveFailures = -1
	}
	if o.GetDisableFailurePercentage() {
		switch {
		case m.FailurePercentage != nil:
			bad(pre + ".failure_percentage and disable_failure_percentage exclude each other")
		case o.GetDisableConsecutiveFailures():
			bad(pre + ".disable_consecutive_failures and disable_failure_percentage: with neither mode on, nothing would be ejected")
		default:
			m.DisableFailurePercentage = true
			c.DisableFailurePercentage = true
		}
	}
	c.ConsecutiveFailures = m.ConsecutiveFailures
	for i, n := range o.GetFailureCodes() {
		code, ok := parseCode(n, pre+".failure_codes", bad)
		if !ok {
			continue
		}
		for _, prev := range o.GetFailureCodes()[:i] {
			if prev == n {
				bad("%s.failure_codes: %q is listed twice", pre, n)
			}
		}
		c.FailureCodes = append(c.FailureCodes, code)
		m.FailureCodes = append(m.FailureCodes, codesPackage.Ident(code.String()))
	}
	runtimeErrors(c.Validate(), outlier.Name, pre, outlierNames, bad)
	return m
}

// zoneAwareNames maps the settings locality.Config.Validate names to the
// options that set them, under (lb.service).zone_aware.
var zoneAwareNames = map[string]string{
	"overprovisioning": "overprovisioning",
	"panic threshold":  "panic_threshold",
}

// readZoneAware returns (lb.service).zone_aware, checked; nil when unset.
// b is the service's policy, nil when unknown.
func readZoneAware(z *lbpb.ZoneAware, b *balancerModel, bad badFunc) *zoneAwareModel {
	if z == nil {
		return nil
	}
	const pre = "(lb.service).zone_aware"
	if b != nil && b.policy.noZoneAware != "" {
		bad("%s under %s: %s", pre, b.policy.enum, b.policy.noZoneAware)
	}
	m := &zoneAwareModel{Overprovisioning: z.GetOverprovisioning(), PanicThreshold: z.GetPanicThreshold()}
	if z.GetDisablePanic() {
		if m.PanicThreshold != 0 {
			bad(pre + ".panic_threshold and disable_panic exclude each other")
		}
		m.PanicThreshold = -1
	}
	c := locality.Config{Overprovisioning: m.Overprovisioning, PanicThreshold: m.PanicThreshold}
	runtimeErrors(c.Validate(), locality.Name, pre, zoneAwareNames, bad)
	return m
}

// readSubset returns (lb.service).subset, checked; nil when unset.
func readSubset(s *lbpb.Subset, bad badFunc) *subsetModel {
	if s == nil {
		return nil
	}
	const pre = "(lb.service).subset"
	m := &subsetModel{Size: count(s.GetSize(), pre+".size", bad)}
	if s.GetSize() == 0 {
		bad(pre + ".size is required")
		return m
	}
	runtimeErrors(subset.Config{Size: m.Size}.Validate(), subset.Name, pre, map[string]string{"size": "size"}, bad)
	return m
}

// count returns v as the int of a runtime Config, reporting it when it
// would not fit one on 32 bits (the generated literal would not compile
// there).
func count(v uint32, what string, bad badFunc) int {
	if v > math.MaxInt32 {
		bad("%s %d is more than %d", what, v, math.MaxInt32)
		return 0
	}
	return int(v)
}

// readSlowStart returns (lb.service).slow_start, checked; nil when unset.
// b is the service's policy, nil when unknown.
func readSlowStart(s *lbpb.SlowStart, b *balancerModel, bad badFunc) *slowStartModel {
	if s == nil {
		return nil
	}
	const pre = "(lb.service).slow_start"
	if b != nil && b.policy.noSlowStart != "" {
		bad("%s under %s: %s", pre, b.policy.enum, b.policy.noSlowStart)
	}
	m := &slowStartModel{
		Window:           positiveDuration(s.GetWindow(), pre+".window", bad),
		Aggression:       s.GetAggression(),
		MinWeightPercent: s.GetMinWeightPercent(),
	}
	c := slowstart.Config{Window: m.Window, Aggression: m.Aggression, MinWeightPercent: m.MinWeightPercent}
	if s.GetWindow() == nil {
		bad(pre + ".window is required")
	}
	if c.Window == 0 {
		// Reported: Validate, which stops at its first error, goes on to
		// the others.
		c.Window = time.Nanosecond
	}
	runtimeErrors(c.Validate(), slowstart.Name, pre, slowStartNames, bad)
	return m
}

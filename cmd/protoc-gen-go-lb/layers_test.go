package main

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/outlier"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/slowstart"
)

// TestLayerErrorsNameTheOption: each setting the runtime's Validate
// refuses is reported under the option that sets it, so a reworded
// runtime message that the names no longer match fails here.
func TestLayerErrorsNameTheOption(t *testing.T) {
	for _, tc := range []struct {
		validate func() error
		name     string
		prefix   string
		names    map[string]string
		want     string
	}{
		{outlier.Config{ConsecutiveFailures: -2}.Validate, outlier.Name, "(lb.service).outlier_ejection", outlierNames,
			"(lb.service).outlier_ejection.consecutive_failures -2"},
		{outlier.Config{Interval: -1}.Validate, outlier.Name, "(lb.service).outlier_ejection", outlierNames,
			"(lb.service).outlier_ejection.interval -1ns"},
		{outlier.Config{BaseEjectionTime: -1}.Validate, outlier.Name, "(lb.service).outlier_ejection", outlierNames,
			"(lb.service).outlier_ejection.base_ejection_time -1ns"},
		{outlier.Config{MaxEjectionTime: -1}.Validate, outlier.Name, "(lb.service).outlier_ejection", outlierNames,
			"(lb.service).outlier_ejection.max_ejection_time -1ns"},
		{outlier.Config{MaxEjectedPercent: 101}.Validate, outlier.Name, "(lb.service).outlier_ejection", outlierNames,
			"(lb.service).outlier_ejection.max_ejected_percent 101"},
		{outlier.Config{FailurePercentage: &outlier.FailurePercentage{Threshold: 101}}.Validate, outlier.Name, "(lb.service).outlier_ejection", outlierNames,
			"(lb.service).outlier_ejection.failure_percentage.threshold 101"},
		{outlier.Config{FailurePercentage: &outlier.FailurePercentage{MinimumRequests: -1}}.Validate, outlier.Name, "(lb.service).outlier_ejection", outlierNames,
			"(lb.service).outlier_ejection.failure_percentage.minimum_requests -1"},
		{outlier.Config{FailureCodes: []codes.Code{codes.OK}}.Validate, outlier.Name, "(lb.service).outlier_ejection", outlierNames,
			"(lb.service).outlier_ejection.failure_codes OK"},
		{slowstart.Config{}.Validate, slowstart.Name, "(lb.service).slow_start", slowStartNames,
			"(lb.service).slow_start.window 0s"},
		{slowstart.Config{Window: time.Second, Aggression: -1}.Validate, slowstart.Name, "(lb.service).slow_start", slowStartNames,
			"(lb.service).slow_start.aggression -1"},
		{slowstart.Config{Window: time.Second, MinWeightPercent: 101}.Validate, slowstart.Name, "(lb.service).slow_start", slowStartNames,
			"(lb.service).slow_start.min_weight_percent 101"},
	} {
		var got []string
		runtimeErrors(tc.validate(), tc.name, tc.prefix, tc.names, func(format string, args ...any) {
			got = append(got, args[0].(string))
		})
		if len(got) != 1 || !strings.HasPrefix(got[0], tc.want) {
			t.Errorf("runtimeErrors(%v) = %q, want one message starting with %q", tc.validate(), got, tc.want)
		}
	}
}

// TestSlowStartPolicies: slow start is refused under exactly the policies
// that send each call to one instance.
func TestSlowStartPolicies(t *testing.T) {
	for _, row := range policies {
		if got, want := row.noSlowStart != "", row.oneInstance; got != want {
			t.Errorf("%s: refuses slow start = %v, want %v (sends each call to one instance: %v)", row.enum, got, want, row.oneInstance)
		}
	}
}

package lb

import (
	"time"

	_ "google.golang.org/grpc/balancer/weightedroundrobin" // weighted_round_robin
)

// ORCAWeightedRoundRobin selects grpc-go's weighted_round_robin (gRFC
// A58): round robin weighted by the ORCA load reports servers send, which
// needs servers that send them (the generated servers do not, so the
// plugin refuses it; pass it to WithBalancer for servers of your own).
// Zero fields take gRPC's defaults. WeightedRoundRobin weighs by the
// registry's weights instead.
type ORCAWeightedRoundRobin struct {
	EnableOOBLoadReport     bool
	OOBReportingPeriod      time.Duration
	BlackoutPeriod          time.Duration
	WeightExpirationPeriod  time.Duration
	WeightUpdatePeriod      time.Duration
	ErrorUtilizationPenalty float64
}

// BalancerName returns "weighted_round_robin".
func (ORCAWeightedRoundRobin) BalancerName() string { return "weighted_round_robin" }

// BalancerConfig is the settings that are set.
func (w ORCAWeightedRoundRobin) BalancerConfig() any {
	return params(
		"enableOobLoadReport", w.EnableOOBLoadReport,
		"oobReportingPeriod", duration(w.OOBReportingPeriod),
		"blackoutPeriod", duration(w.BlackoutPeriod),
		"weightExpirationPeriod", duration(w.WeightExpirationPeriod),
		"weightUpdatePeriod", duration(w.WeightUpdatePeriod),
		"errorUtilizationPenalty", w.ErrorUtilizationPenalty)
}

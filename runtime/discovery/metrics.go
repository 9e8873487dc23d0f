package discovery

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"

	"google.golang.org/grpc/codes"
	estats "google.golang.org/grpc/experimental/stats"
	"google.golang.org/grpc/status"
)

// The metrics of a watch, recorded for each channel through the
// MetricsRecorder grpc-go hands its resolver (resolver.BuildOptions). They
// are off by default, as grpc-go's own LB metrics are: lb.WithMetrics turns
// them on, or enable them by name in the channel's OpenTelemetry options.
// Labels are bounded and never carry a secret: the channel's target without
// user info or query, the watch (scheme://registry/service), and a kind
// from a fixed list.
var (
	updatesMetric = estats.RegisterInt64Count(estats.MetricDescriptor{
		Name:        "lb.discovery.updates",
		Description: "EXPERIMENTAL. Resolver states a discovery watch gave a channel.",
		Unit:        "{update}",
		Labels:      []string{"grpc.target", "lb.discovery.watch"},
	})
	errorsMetric = estats.RegisterInt64Count(estats.MetricDescriptor{
		Name:        "lb.discovery.errors",
		Description: "EXPERIMENTAL. Registry errors a discovery watch reported to a channel (each once while it stays the same), by kind: unavailable, timeout, tls, no_instances, stale.",
		Unit:        "{error}",
		Labels:      []string{"grpc.target", "lb.discovery.watch", "lb.discovery.error"},
	})
	instancesMetric = estats.RegisterInt64Gauge(estats.MetricDescriptor{
		Name:        "lb.discovery.instances",
		Description: "EXPERIMENTAL. Endpoints in the last state a discovery watch gave a channel.",
		Unit:        "{endpoint}",
		Labels:      []string{"grpc.target", "lb.discovery.watch"},
	})
	droppedMetric = estats.RegisterInt64Count(estats.MetricDescriptor{
		Name:        "lb.discovery.dropped",
		Description: "EXPERIMENTAL. Registry entries a discovery watch dropped as invalid (each once while its reason stays the same), by reason: bad_address, bad_entry.",
		Unit:        "{entry}",
		Labels:      []string{"grpc.target", "lb.discovery.watch", "lb.discovery.drop_reason"},
	})
	stalenessMetric = estats.RegisterInt64AsyncGauge(estats.MetricDescriptor{
		Name:        "lb.discovery.staleness",
		Description: "EXPERIMENTAL. How long the registry has not confirmed the state a channel runs on (0 while it answers): the age of the last good state kept through a registry failure.",
		Unit:        "ms",
		Labels:      []string{"grpc.target", "lb.discovery.watch"},
	})
)

// MetricNames are the names of the metrics above, for a channel's
// OpenTelemetry options.
var MetricNames = []string{"lb.discovery.updates", "lb.discovery.errors", "lb.discovery.instances", "lb.discovery.dropped", "lb.discovery.staleness"}

// errorKind is the lb.discovery.error label of err.
func errorKind(err error) string {
	var (
		cve  *tls.CertificateVerificationError
		ua   x509.UnknownAuthorityError
		hn   x509.HostnameError
		ci   x509.CertificateInvalidError
		alrt tls.AlertError
		rec  tls.RecordHeaderError
	)
	switch {
	case errors.Is(err, errStale):
		return "stale"
	case errors.Is(err, ErrNoInstances):
		return "no_instances"
	case errors.As(err, &cve), errors.As(err, &ua), errors.As(err, &hn), errors.As(err, &ci), errors.As(err, &alrt), errors.As(err, &rec):
		return "tls" // before timeout: a deadline may be explained by a failed handshake
	case errors.Is(err, context.DeadlineExceeded), status.Code(err) == codes.DeadlineExceeded:
		return "timeout"
	}
	return "unavailable"
}

// dropReason is the lb.discovery.drop_reason label of a dropped entry.
func dropReason(err error) string {
	if errors.Is(err, ErrBadAddress) {
		return "bad_address"
	}
	return "bad_entry"
}

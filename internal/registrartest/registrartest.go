// Package registrartest checks, against a backend's real registry, what
// every Registrar shares through discovery.Lifecycle:
//
//	registrartest.DeregisterIsNotAWarning(t, ctx, r, etcd.ErrDeregistered,
//		"etcd: registered /services/greeter/a", "etcd: deregistered /services/greeter/a")
package registrartest

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/grpclog"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/logtest"
)

// Registrar is a backend's Registrar (it embeds discovery.Lifecycle).
type Registrar interface {
	Register(ctx context.Context) error
	Deregister(ctx context.Context) error
	Status() error
	SetLogger(grpclog.DepthLoggerV2)
}

// DeregisterIsNotAWarning registers r and deregisters it within ctx: both
// succeed, the status is then errDeregistered, and what r logged is
// wantInfos at Info and no warning (a deliberate Deregister, and whatever
// failure it causes in the registry client, are not warnings).
func DeregisterIsNotAWarning(t *testing.T, ctx context.Context, r Registrar, errDeregistered error, wantInfos ...string) {
	t.Helper()
	log := logtest.NewLogger()
	r.SetLogger(log)
	if err := r.Register(ctx); err != nil {
		t.Fatalf("Register() = %v", err)
	}
	if err := r.Deregister(ctx); err != nil {
		t.Fatalf("Deregister() = %v", err)
	}
	if err := r.Status(); !errors.Is(err, errDeregistered) {
		t.Errorf("Status() = %v, want %v", err, errDeregistered)
	}
	if len(log.Warnings()) > 0 {
		t.Errorf("warnings logged = %q, want none", log.Warnings())
	}
	if diff := cmp.Diff(wantInfos, log.Infos()); diff != "" {
		t.Errorf("infos logged (-want +got):\n%s", diff)
	}
}

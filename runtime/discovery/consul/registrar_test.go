package consul

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/cctest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/consulagent"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/logtest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
)

// TestDeregisterIsNotAWarning: a deliberate Deregister is logged at Info,
// not as a warning.
func TestDeregisterIsNotAWarning(t *testing.T) {
	a, err := consulagent.Start(t.TempDir(), "")
	if err == consulagent.ErrNoBinary && os.Getenv("LB_REQUIRE_TOOLS") == "" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), cctest.Timeout)
	defer cancel()
	reg, err := Config{Address: a.HTTPAddr()}.NewRegistrar(discovery.Instance{Service: "greeter", ID: "g1", Address: "127.0.0.1:1", HealthService: "test.Greeter"}, "")
	if err != nil {
		t.Fatal(err)
	}
	r := reg.(*Registrar)
	log := logtest.NewLogger()
	r.SetLogger(log)
	if err := r.Register(ctx); err != nil {
		t.Fatalf("Register() = %v", err)
	}
	if err := r.Deregister(ctx); err != nil {
		t.Fatalf("Deregister() = %v", err)
	}
	if err := r.Status(); !errors.Is(err, ErrDeregistered) {
		t.Errorf("Status() = %v, want ErrDeregistered", err)
	}
	if len(log.Warnings()) > 0 {
		t.Errorf("warnings logged = %q, want none", log.Warnings())
	}
	want := []string{"consul: registered g1", "consul: deregistered g1"}
	if diff := cmp.Diff(want, log.Infos()); diff != "" {
		t.Errorf("infos logged (-want +got):\n%s", diff)
	}
}

package consul

import (
	"context"
	"os"
	"testing"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/cctest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/consulagent"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/registrartest"
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
	registrartest.DeregisterIsNotAWarning(t, ctx, reg.(*Registrar), ErrDeregistered, "consul: registered g1", "consul: deregistered g1")
}

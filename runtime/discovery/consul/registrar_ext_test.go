package consul_test

import (
	"context"
	"errors"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/consul"
)

// TestRegisterAfterDeregister: a deregistered Registrar refuses to start
// again and registers nothing, whether it was registered before or not;
// Deregister is idempotent.
func TestRegisterAfterDeregister(t *testing.T) {
	agent := startAgent(t, "")
	c, err := api.NewClient(&api.Config{Address: agent.HTTPAddr()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for _, registerFirst := range []bool{false, true} {
		reg, err := consul.Config{Address: agent.HTTPAddr()}.NewRegistrar(discovery.Instance{Service: "greeter", ID: "late", Address: "127.0.0.1:1", HealthService: "test.Greeter"}, "")
		if err != nil {
			t.Fatal(err)
		}
		if registerFirst {
			if err := reg.Register(ctx); err != nil {
				t.Fatalf("Register() = %v", err)
			}
		}
		if err := reg.Deregister(ctx); err != nil {
			t.Fatalf("Deregister() = %v", err)
		}
		if err := reg.Register(ctx); !errors.Is(err, consul.ErrDeregistered) {
			t.Errorf("Register() after Deregister = %v, want ErrDeregistered", err)
		}
		services, err := c.Agent().ServicesWithFilterOpts("", (&api.QueryOptions{}).WithContext(ctx))
		if err != nil {
			t.Fatal(err)
		}
		if s, ok := services["late"]; ok {
			t.Errorf("the agent has %+v after Register after Deregister, want nothing", s)
		}
		if err := reg.Deregister(ctx); err != nil {
			t.Errorf("second Deregister() = %v, want nil", err)
		}
		if err := reg.(*consul.Registrar).Status(); !errors.Is(err, consul.ErrDeregistered) {
			t.Errorf("Status() = %v, want ErrDeregistered", err)
		}
	}
}

package bench

import (
	"reflect"
	"strings"
	"testing"

	"google.golang.org/grpc/balancer"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/lb"
)

// TestOursSurvivePeers: this module imports go-zero (which registers
// p2c_ewma and consistent_hash) and kratos beside our runtime; every policy
// of ours is still our own package's, and the runtime selects it.
func TestOursSurvivePeers(t *testing.T) {
	if balancer.Get("p2c_ewma") == nil {
		t.Fatal("go-zero's p2c_ewma is not registered: the test proves nothing")
	}
	for _, b := range []lb.Balancer{lb.Random{}, lb.P2CEWMA{}, lb.LeastRequest{}, lb.WeightedRoundRobin{}, lb.ConsistentHash{}, lb.PickFirst{}} {
		name := b.BalancerName()
		typ := reflect.TypeOf(balancer.Get(name))
		if typ.Kind() == reflect.Pointer {
			typ = typ.Elem()
		}
		if !strings.HasPrefix(typ.PkgPath(), "github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/") {
			t.Errorf("%s is registered by %s", name, typ.PkgPath())
		}
		if _, err := lb.ServiceConfig(&lb.Service{FullName: "x.Y", Balancer: b}); err != nil {
			t.Errorf("ServiceConfig with %s: %v", name, err)
		}
	}
}

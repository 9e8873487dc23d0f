package hedge_test

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/resolvertest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/testbackend"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/hedge"
)

func TestMain(m *testing.M) { resolvertest.VerifyTestMain(m) }

// TestHedgeOfAMultiAddressEndpoint: one endpoint of two addresses, the
// first refusing connections, under round_robin (an endpointsharding
// child); pick_first connects to the second. The first attempt holds the
// second address; the hedge must see the endpoint as held (any of its
// addresses is) and not send the call there again.
func TestHedgeOfAMultiAddressEndpoint(t *testing.T) {
	b := testbackend.Start(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	r := manual.NewBuilderWithScheme("rev")
	r.InitialState(resolver.State{Endpoints: []resolver.Endpoint{{Addresses: []resolver.Address{{Addr: dead}, {Addr: b.Addr}}}}})
	cc, err := grpc.NewClient("rev:///x", grpc.WithResolvers(r), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"lb_hedge":{"childPolicy":[{"round_robin":{}}]}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := testbackend.Echo(ctx, cc, "Echo", wrapperspb.String("warmup")); err != nil {
		t.Fatal(err)
	}
	a := &hedge.Attempts{}
	if err := testbackend.Echo(hedge.WithAttempt(ctx, a, 1), cc, "Echo", wrapperspb.String("k")); err != nil {
		t.Fatal(err)
	}
	err = testbackend.Echo(hedge.WithAttempt(ctx, a, 2), cc, "Echo", wrapperspb.String("k")) // the hedge
	t.Logf("used %v, hedge: %v", a.Used(), err)
	if err == nil {
		t.Errorf("the hedge succeeded: with the only instance held by attempt 1 it must fail")
	}
	if n := b.Keys()["k"]; n > 1 {
		t.Errorf("backend %s got call k %d times: the hedge went to the instance the call had tried", b.Addr, n)
	}
}

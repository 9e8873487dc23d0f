package lb_test

import (
	"context"
	"fmt"
	"time"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/static"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/lb"
)

// The generated New<Svc>BalancedClient calls Dial with the service's
// declared policy; by hand it looks like this. Dial does not wait for a
// connection unless lb.WithBlock is given.
func ExampleDial() {
	svc := &lb.Service{
		FullName:  "helloworld.Greeter",
		Discovery: static.Config{Addresses: []string{"10.0.0.1:50051", "10.0.0.2:50051"}},
		Balancer:  lb.P2CEWMA{},
		Methods:   []lb.Method{{Name: "SayHello", Timeout: 2 * time.Second, Idempotent: true}},
	}
	conn, err := lb.Dial(context.Background(), svc, lb.WithInsecure())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()
	// conn is a grpc.ClientConnInterface: helloworld.NewGreeterClient(conn).
	fmt.Println(conn.Conn().Target())
	// Output: static:///10.0.0.1:50051,10.0.0.2:50051
}

// ServiceConfig is the gRPC service config a Service dials with: the
// policy, client-side health checking, each method's settings, and the
// retry budget once a method retries.
func ExampleServiceConfig() {
	sc, err := lb.ServiceConfig(&lb.Service{
		FullName: "helloworld.Greeter",
		Balancer: lb.LeastRequest{ChoiceCount: 3},
		Methods:  []lb.Method{{Name: "SayHello", Timeout: 2 * time.Second, WaitForReady: true}},
	})
	fmt.Println(sc, err)
	// Output: {"loadBalancingConfig":[{"lb_least_request":{"choiceCount":3}}],"healthCheckConfig":{"serviceName":"helloworld.Greeter"},"methodConfig":[{"name":[{"service":"helloworld.Greeter","method":"SayHello"}],"timeout":"2.000000000s","waitForReady":true}]} <nil>
}

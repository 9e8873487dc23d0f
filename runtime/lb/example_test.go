package lb_test

import (
	"context"
	"fmt"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"google.golang.org/grpc"

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

// WithMetrics records a client's and a server's metrics on an
// OpenTelemetry MeterProvider, whose reader exports them (the Prometheus
// exporter, OTLP, or a ManualReader as here). The README lists the metrics.
func ExampleWithMetrics() {
	reader := sdkmetric.NewManualReader() // e.g. prometheus.New() from go.opentelemetry.io/otel/exporters/prometheus
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	svc := &lb.Service{
		Name:      "helloworld.Greeter",
		FullName:  "helloworld.Greeter",
		Discovery: static.Config{Addresses: []string{"10.0.0.1:50051", "10.0.0.2:50051"}},
	}

	// The client: New<Svc>BalancedClient(ctx, ..., lb.WithMetrics(mp)).
	conn, err := lb.Dial(context.Background(), svc, lb.WithInsecure(), lb.WithMetrics(mp))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()

	// The server: its call metrics through grpc.NewServer, its
	// registration's through Register (Register<Svc>BalancedServer).
	s := grpc.NewServer(lb.ServerMetrics(mp))
	desc := &grpc.ServiceDesc{ServiceName: svc.FullName, HandlerType: (*any)(nil)} // the generated <Svc>_ServiceDesc
	reg, err := lb.Register(s, svc, desc, struct{}{}, lb.WithMetrics(mp))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer reg.Shutdown(context.Background())
}

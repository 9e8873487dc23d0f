// Package greeter is the example's implementation of helloworld.Greeter: it
// answers with the name of the backend that served the call, so a client
// can see how its calls are spread.
package greeter

import (
	"context"
	"net"
	"sync/atomic"

	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/example/helloworld"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/lb"
)

// Server implements helloworld.GreeterServer.
type Server struct {
	helloworld.UnimplementedGreeterServer
	// Backend names this instance in replies.
	Backend string
	// Bad makes every call fail with INTERNAL while the instance's health
	// stays SERVING: a gray failure (a bad deploy, a dependency down
	// behind it) that only the calls show.
	Bad atomic.Bool
}

// SayHello greets req.Name.
func (s *Server) SayHello(_ context.Context, req *helloworld.HelloRequest) (*helloworld.HelloReply, error) {
	if s.Bad.Load() {
		return nil, status.Errorf(codes.Internal, "greeter %s: failing on purpose", s.Backend)
	}
	return &helloworld.HelloReply{Message: "Hello, " + req.GetName(), Backend: s.Backend}, nil
}

// Instance is a running greeter server.
type Instance struct {
	Addr         string
	Server       *grpc.Server
	Impl         *Server
	Registration *lb.Registration
	done         chan error
}

// Options say where an instance registers.
type Options struct {
	// Registry is the etcd endpoint list; empty means the proto's.
	Registry string
	// Advertise is the address put in the registry; empty means the listen
	// address. With NoRegistry, nothing is registered.
	Advertise string
	// NoRegistry serves without registering in the registry.
	NoRegistry bool
	// Metrics, when set, records the server's call and registration
	// metrics on it.
	Metrics metric.MeterProvider
}

// Start listens on addr ("127.0.0.1:0" for a free port), registers a
// Server named after the address it got through the generated helper
// (in etcd too, unless o.NoRegistry), and serves in the background until
// Stop or the Registration's Shutdown. The instance goes in the registry
// once it serves; the Registration's Status says how that goes.
func Start(addr string, o Options) (*Instance, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	var sopts []grpc.ServerOption
	var opts []lb.RegisterOption
	if o.Metrics != nil {
		sopts = append(sopts, lb.ServerMetrics(o.Metrics))
		opts = append(opts, lb.WithMetrics(o.Metrics))
	}
	in := &Instance{Addr: lis.Addr().String(), Server: grpc.NewServer(sopts...), done: make(chan error, 1)}
	if o.Registry != "" {
		opts = append(opts, lb.WithRegistryAddress(o.Registry))
	}
	if !o.NoRegistry {
		advertise := o.Advertise
		if advertise == "" {
			advertise = in.Addr
		}
		opts = append(opts, lb.WithAdvertiseAddress(advertise))
	}
	in.Impl = &Server{Backend: in.Addr}
	reg, err := helloworld.RegisterGreeterBalancedServer(in.Server, in.Impl, opts...)
	if err != nil {
		lis.Close()
		return nil, err
	}
	in.Registration = reg
	// Serving through the Registration puts the instance in the registry
	// the moment it accepts connections.
	go func() { in.done <- reg.Serve(lis) }()
	return in, nil
}

// Wait returns Serve's result once the server has stopped.
func (in *Instance) Wait() error { return <-in.done }

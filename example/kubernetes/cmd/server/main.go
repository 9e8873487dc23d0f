// Command server is the greeter of deploy.yaml: it serves on -addr and, on
// SIGTERM, runs the generated Registration's Shutdown: NOT_SERVING (the
// readiness probe fails), the clients watching its health told, then a
// graceful stop. Kubernetes sends SIGTERM once the preStop hook is done.
//
//	go run ./cmd/server -addr :50051
package main

import (
	"context"
	"flag"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/example/helloworld"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/example/kubernetes/kubegreeter"
)

type greeter struct {
	kubegreeter.UnimplementedGreeterServer
	name string
}

func (g greeter) SayHello(_ context.Context, req *helloworld.HelloRequest) (*helloworld.HelloReply, error) {
	return &helloworld.HelloReply{Message: "Hello, " + req.GetName(), Backend: g.name}, nil
}

func main() {
	addr := flag.String("addr", ":50051", "listen address")
	drain := flag.Duration("drain", 20*time.Second, "how long calls in flight may take to finish on SIGTERM")
	flag.Parse()
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	name, _ := os.Hostname() // the pod's name
	s := grpc.NewServer(kubegreeter.GreeterServerOptions()...)
	// No registrar: the Service's selector puts the pod in the
	// EndpointSlices, and its readiness probe (grpc, service "") asks the
	// health service this registers.
	reg, err := kubegreeter.RegisterGreeterBalancedServer(s, greeter{name: name})
	if err != nil {
		log.Fatal(err)
	}
	go reg.Serve(lis)
	log.Printf("greeter %s serving on %s", name, lis.Addr())

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	<-ctx.Done()
	shutdown, cancel := context.WithTimeout(context.Background(), *drain)
	defer cancel()
	if err := reg.Shutdown(shutdown); err != nil {
		log.Printf("shutdown: %v", err)
	}
	log.Printf("greeter %s stopped", name)
}

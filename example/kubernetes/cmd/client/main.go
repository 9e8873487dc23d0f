// Command client calls the greeter of deploy.yaml every -every, through
// the generated balanced client: it follows the Service's EndpointSlices
// with the pod's service account (rbac.yaml), or a kubeconfig outside the
// cluster.
//
//	go run ./cmd/client
package main

import (
	"context"
	"flag"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/example/helloworld"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/example/kubernetes/kubegreeter"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/lb"
)

func main() {
	every := flag.Duration("every", time.Second, "time between calls")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	c, err := kubegreeter.NewGreeterBalancedClient(ctx, lb.WithInsecure())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	tick := time.NewTicker(*every)
	defer tick.Stop()
	for {
		r, err := c.SayHello(ctx, &helloworld.HelloRequest{Name: "kubernetes"})
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			log.Printf("SayHello: %v", err)
		} else {
			log.Printf("%s (from %s)", r.GetMessage(), r.GetBackend())
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

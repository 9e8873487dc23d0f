// Command client calls helloworld.Greeter through the generated balanced
// client and prints how many calls each backend answered.
//
//	go run ./example/client -registry 127.0.0.1:2379 -n 100
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"maps"
	"slices"
	"time"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/example/helloworld"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/lb"
)

func main() {
	registry := flag.String("registry", "", "etcd endpoints, replacing the proto's 127.0.0.1:2379")
	n := flag.Int("n", 100, "number of calls")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opts := []lb.DialOption{lb.WithInsecure()}
	if *registry != "" {
		opts = append(opts, lb.WithRegistryAddress(*registry))
	}
	c, err := helloworld.NewGreeterBalancedClient(ctx, opts...)
	if err != nil {
		log.Fatalf("client: %v", err)
	}
	defer c.Close()
	counts := map[string]int{}
	for range *n {
		reply, err := c.SayHello(ctx, &helloworld.HelloRequest{Name: "client"})
		if err != nil {
			log.Printf("client: %v", err)
			continue
		}
		counts[reply.GetBackend()]++
	}
	for _, b := range slices.Sorted(maps.Keys(counts)) {
		fmt.Printf("%-21s %d\n", b, counts[b])
	}
}

// Command server runs one greeter instance and registers it in etcd; on
// SIGINT or SIGTERM it goes NOT_SERVING, deregisters and stops gracefully.
//
//	go run ./example/server -addr 127.0.0.1:50051 -registry 127.0.0.1:2379
package main

import (
	"context"
	"flag"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/example/greeter"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:50051", "listen address")
	advertise := flag.String("advertise", "", "address registered for clients (default: the listen address)")
	registry := flag.String("registry", "", "etcd endpoints, replacing the proto's 127.0.0.1:2379")
	flag.Parse()

	in, err := greeter.Start(*addr, greeter.Options{Registry: *registry, Advertise: *advertise})
	if in == nil {
		log.Fatalf("server: %v", err)
	}
	if err != nil {
		log.Printf("server: %v", err)
	}
	log.Printf("greeter serving on %s", in.Addr)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	select {
	case <-ctx.Done():
	case err := <-waitErr(in):
		log.Fatalf("server: %v", err)
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := in.Registration.Shutdown(shutdown); err != nil {
		log.Printf("server: shutdown: %v", err)
	}
	log.Printf("greeter on %s stopped", in.Addr)
}

func waitErr(in *greeter.Instance) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- in.Wait() }()
	return ch
}

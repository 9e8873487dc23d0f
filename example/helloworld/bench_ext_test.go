package helloworld_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/example/helloworld"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/static"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/lb"
)

// BenchmarkBalancedCall is a unary call through the generated client to
// three in-process backends, with our random balancer and, in the same
// run, grpc-go's own pick_first and round_robin; compare with benchstat.
//
//	go test ./example/helloworld -run '^$' -bench BalancedCall -count 6
func BenchmarkBalancedCall(b *testing.B) {
	for _, bc := range []struct {
		name string
		bal  lb.Balancer
	}{
		{"pick_first", lb.PickFirst{}},
		{"round_robin", lb.RoundRobin{}},
		{"random", lb.Random{}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			_, addrs := startServers(b, 3)
			c, err := helloworld.NewGreeterBalancedClient(context.Background(), lb.WithInsecure(), staticTarget(addrs), lb.WithBalancer(bc.bal))
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			if bc.name != "pick_first" {
				waitForBackends(b, c, addrs...)
			}
			req := &helloworld.HelloRequest{Name: "bench"}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := c.SayHello(context.Background(), req); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkPool is a unary call from 8 callers (4 per core) through a pool
// of 1 and of 4 client connections to three in-process backends over
// loopback, round robin; compare with benchstat. It tells when a pool helps:
// on CPU-bound cores, more HTTP/2 connections only cost more.
//
//	go test ./example/helloworld -run '^$' -bench Pool -count 6
func BenchmarkPool(b *testing.B) {
	for _, size := range []int{1, 4} {
		b.Run(fmt.Sprintf("pool_size=%d", size), func(b *testing.B) {
			_, addrs := startServers(b, 3)
			svc := &lb.Service{Name: "helloworld.Greeter", FullName: "helloworld.Greeter", Discovery: static.Config{Addresses: addrs}, PoolSize: size}
			conn, err := lb.Dial(context.Background(), svc, lb.WithInsecure(), lb.WithBlock())
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			c := helloworld.NewGreeterClient(conn)
			req := &helloworld.HelloRequest{Name: "bench"}
			b.SetParallelism(4)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := c.SayHello(context.Background(), req); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

package helloworld_test

import (
	"context"
	"testing"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/example/helloworld"
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

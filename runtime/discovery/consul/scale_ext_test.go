package consul_test

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"google.golang.org/grpc/resolver"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/cctest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/consul"
)

// BenchmarkScale measures, with 1,000 and 2,000 instances of one service,
// the time from registering or deregistering one instance to the state
// that carries it, through our resolver (rate limit lifted, so that only
// the work is measured) and, in the same run, through a bare blocking query
// loop of Consul's api client: the difference is what the resolver adds to
// Consul's own work. It reports p50 and p90.
//
//	go test ./runtime/discovery/consul -run '^$' -bench Scale -benchtime 20x
func BenchmarkScale(b *testing.B) {
	a := startAgent(b, "")
	client, err := api.NewClient(&api.Config{Address: a.HTTPAddr()})
	if err != nil {
		b.Fatal(err)
	}
	registered := 0
	for _, n := range []int{1000, 2000} {
		for ; registered < n; registered++ {
			if err := client.Agent().ServiceRegister(&api.AgentServiceRegistration{
				ID: fmt.Sprintf("scale-%d", registered), Name: "scale", Address: fmt.Sprintf("10.0.%d.%d", registered>>8, registered&255), Port: 50051,
			}); err != nil {
				b.Fatal(err)
			}
		}
		change := func(i int) (want int) {
			if i%2 == 0 {
				if err := client.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "extra", Name: "scale", Address: "10.255.255.254", Port: 50051}); err != nil {
					b.Fatal(err)
				}
				return n + 1
			}
			if err := client.Agent().ServiceDeregister("extra"); err != nil {
				b.Fatal(err)
			}
			return n
		}
		report := func(b *testing.B, lat []time.Duration) {
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*9/10].Microseconds())/1000, "p90-ms")
		}
		b.Run(fmt.Sprintf("lb/instances=%d", n), func(b *testing.B) {
			u, _ := url.Parse("consul://" + a.HTTPAddr() + "/scale")
			cc := cctest.NewSizeCC()
			r, err := consul.NewBuilder(consul.WithRateLimit(1000, 1000)).Build(resolver.Target{URL: *u}, cc, resolver.BuildOptions{})
			if err != nil {
				b.Fatal(err)
			}
			defer func() { r.Close(); discovery.CloseIdleWatches() }()
			cc.WaitLen(b, n)
			var lat []time.Duration
			i := 0
			for b.Loop() {
				start := time.Now()
				cc.WaitLen(b, change(i))
				lat = append(lat, time.Since(start))
				i++
			}
			if i%2 == 1 {
				change(1)
			}
			report(b, lat)
		})
		b.Run(fmt.Sprintf("consul-api/instances=%d", n), func(b *testing.B) {
			// A bare blocking-query loop: Consul's own work and the api
			// client's decoding, nothing else.
			ctx, cancel := context.WithCancel(context.Background())
			sizes := make(chan int, 100)
			done := make(chan struct{})
			go func() {
				defer close(done)
				var index uint64
				for ctx.Err() == nil {
					entries, meta, err := client.Health().Service("scale", "", true, (&api.QueryOptions{WaitIndex: index, WaitTime: time.Minute, AllowStale: true}).WithContext(ctx))
					if err != nil {
						continue
					}
					index = max(meta.LastIndex, 1)
					select {
					case sizes <- len(entries):
					case <-ctx.Done():
					}
				}
			}()
			defer func() { cancel(); <-done }()
			wait := func(want int) {
				for got := range sizes {
					if got == want {
						return
					}
				}
			}
			wait(n)
			var lat []time.Duration
			i := 0
			for b.Loop() {
				start := time.Now()
				wait(change(i))
				lat = append(lat, time.Since(start))
				i++
			}
			if i%2 == 1 {
				change(1)
				wait(n)
			}
			report(b, lat)
		})
	}
}

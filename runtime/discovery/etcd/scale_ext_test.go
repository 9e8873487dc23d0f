package etcd_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	etcdnaming "go.etcd.io/etcd/client/v3/naming/resolver"
	"google.golang.org/grpc/resolver"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/cctest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/etcd"
)

// putKeys writes n instances under prefix, 128 to a transaction (etcd's
// default limit).
func putKeys(b *testing.B, c *clientv3.Client, prefix string, n int) {
	b.Helper()
	for i := 0; i < n; i += 128 {
		var ops []clientv3.Op
		for j := i; j < min(i+128, n); j++ {
			v, _ := json.Marshal(map[string]any{"Op": 0, "Addr": fmt.Sprintf("10.%d.%d.%d:50051", j>>16&255, j>>8&255, j&255)})
			ops = append(ops, clientv3.OpPut(fmt.Sprintf("%s/%07d", prefix, j), string(v)))
		}
		if _, err := c.Txn(ctxT(b)).Then(ops...).Commit(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkScale measures, at 10,000 and 100,000 keys of one service, with
// our resolver and etcd's own naming resolver in the same run: the time
// from Build to the full state (full), and from a put or delete of one key
// to the state that carries it (change, reported as p50 and p90). For ours,
// also a second channel joining the running watch (join).
//
//	go test ./runtime/discovery/etcd -run '^$' -bench Scale -benchtime 20x
func BenchmarkScale(b *testing.B) {
	s := startEtcd(b)
	c := rawClient(b, s.Endpoint())
	for _, n := range []int{10_000, 100_000} {
		prefix := fmt.Sprintf("/services/scale%d", n)
		putKeys(b, c, prefix, n)
		target := func(name string) resolver.Target {
			u, _ := url.Parse("etcd://" + s.Endpoint() + prefix)
			if name == "etcd-naming" {
				u, _ = url.Parse("etcd:///" + prefix)
			}
			return resolver.Target{URL: *u}
		}
		builders := []struct {
			name string
			new  func() resolver.Builder
		}{
			// A builder with an option of its own gets watches of its own:
			// a new one per Build measures a cold listing.
			{"lb", func() resolver.Builder { return etcd.NewBuilder(etcd.WithResyncInterval(etcd.ResyncInterval)) }},
			{"etcd-naming", func() resolver.Builder {
				rb, err := etcdnaming.NewBuilder(c)
				if err != nil {
					b.Fatal(err)
				}
				return rb
			}},
		}
		for _, bc := range builders {
			b.Run(fmt.Sprintf("full/%s/keys=%d", bc.name, n), func(b *testing.B) {
				for b.Loop() {
					cc := cctest.NewSizeCC()
					r, err := bc.new().Build(target(bc.name), cc, resolver.BuildOptions{})
					if err != nil {
						b.Fatal(err)
					}
					cc.WaitLen(b, n)
					b.StopTimer()
					r.Close()
					discovery.CloseIdleWatches()
					b.StartTimer()
				}
			})
		}
		b.Run(fmt.Sprintf("join/lb/keys=%d", n), func(b *testing.B) {
			rb := etcd.NewBuilder(etcd.WithResyncInterval(etcd.ResyncInterval))
			first := cctest.NewSizeCC()
			r0, err := rb.Build(target("lb"), first, resolver.BuildOptions{})
			if err != nil {
				b.Fatal(err)
			}
			defer func() { r0.Close(); discovery.CloseIdleWatches() }()
			first.WaitLen(b, n)
			for b.Loop() {
				cc := cctest.NewSizeCC()
				r, err := rb.Build(target("lb"), cc, resolver.BuildOptions{})
				if err != nil {
					b.Fatal(err)
				}
				cc.WaitLen(b, n)
				r.Close()
			}
		})
		for _, bc := range builders {
			b.Run(fmt.Sprintf("change/%s/keys=%d", bc.name, n), func(b *testing.B) {
				cc := cctest.NewSizeCC()
				r, err := bc.new().Build(target(bc.name), cc, resolver.BuildOptions{})
				if err != nil {
					b.Fatal(err)
				}
				defer func() { r.Close(); discovery.CloseIdleWatches() }()
				cc.WaitLen(b, n)
				var lat []time.Duration
				i := 0
				for b.Loop() {
					key := prefix + "/extra"
					start := time.Now()
					if i%2 == 0 {
						if _, err := c.Put(ctxT(b), key, `{"Op":0,"Addr":"10.255.255.254:50051"}`); err != nil {
							b.Fatal(err)
						}
						cc.WaitLen(b, n+1)
					} else {
						if _, err := c.Delete(ctxT(b), key); err != nil {
							b.Fatal(err)
						}
						cc.WaitLen(b, n)
					}
					lat = append(lat, time.Since(start))
					i++
				}
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(lat[len(lat)*9/10].Microseconds())/1000, "p90-ms")
				if i%2 == 1 {
					c.Delete(ctxT(b), prefix+"/extra")
				}
			})
		}
	}
}

package dns_test

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/resolvertest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/testbackend"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/dns"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/lb"
)

// TestMaxConnectionAgeFindsANewBackend: 3 backends behind an SRV name the
// client looks up once an hour; a 4th is added to the answers. With
// max_connection_age 1s, each connection ends within a second or so; the
// client reconnects, looks the name up again, and the 4th gets its share.
func TestMaxConnectionAgeFindsANewBackend(t *testing.T) {
	svc := &lb.Service{FullName: testbackend.EchoService, Connection: &lb.Connection{MaxConnectionAge: time.Second, MaxConnectionAgeGrace: time.Second}}
	var bs []*testbackend.Backend
	var srvs []*net.SRV
	for range 4 {
		b := testbackend.StartWith(t, lb.ServerOptions(svc)...)
		_, port, _ := net.SplitHostPort(b.Addr)
		p, _ := strconv.Atoi(port)
		bs = append(bs, b)
		srvs = append(srvs, &net.SRV{Target: "lo.test.", Port: uint16(p), Weight: 1})
	}
	f := newFakeNet()
	f.set(func(f *fakeNet) {
		f.hosts["lo.test."] = []string{"127.0.0.1"}
		f.srvs = srvs[:3]
	})
	r := dns.NewBuilder(dns.WithNetResolver(func(string) dns.NetResolver { return f }))
	ctx, cancel := context.WithTimeout(context.Background(), resolvertest.Timeout)
	defer cancel()
	c, err := lb.Dial(ctx, svc, lb.WithInsecure(), lb.WithBlock(),
		lb.WithTarget("lbdns://127.0.0.1:8600/svc.test?record=srv&refresh=1h"), lb.WithDialOptions(grpc.WithResolvers(r)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	f.set(func(f *fakeNet) { f.srvs = srvs })
	start := time.Now()
	for bs[3].Calls.Load() == 0 {
		if err := testbackend.Call(ctx, c); err != nil {
			t.Fatalf("call: %v (the 4th backend got no call %v after it was added)", err, time.Since(start))
		}
	}
	t.Logf("the 4th backend got its first call %v after it was added", time.Since(start))
	share := testbackend.Share(t, c, 2, 800, bs, bs[3])
	t.Logf("then %.1f%% of 800 calls", 100*share)
	if share < 0.15 || share > 0.35 {
		t.Errorf("the 4th backend got %.1f%% of the calls, want its share, 25%%", 100*share)
	}
}

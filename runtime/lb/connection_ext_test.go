package lb_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/faultproxy"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/resolvertest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/testbackend"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/static"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/lb"
)

func TestServerOptions(t *testing.T) {
	if got := lb.ServerOptions(&lb.Service{}); got != nil {
		t.Errorf("ServerOptions without a Connection = %v, want none", got)
	}
	svc := &lb.Service{Connection: &lb.Connection{KeepaliveTime: 10 * time.Second, MaxConnectionAge: time.Minute}}
	if got := lb.ServerOptions(svc); len(got) != 2 {
		t.Errorf("ServerOptions with keepalive and an age = %d options, want 2 (enforcement, parameters)", len(got))
	}
}

// TestKeepaliveNoticesASilentBackend: two backends, one behind a proxy
// that then drops every byte (a host gone without FIN or RST). With
// keepalive 10s + 3s, the client gives up on it within 13 s of its last
// answer (15 s allowed for a busy machine) and its calls go to the other
// backend.
func TestKeepaliveNoticesASilentBackend(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for keepalive, 13 s")
	}
	conn := &lb.Connection{KeepaliveTime: 10 * time.Second, KeepaliveTimeout: 3 * time.Second}
	opts := lb.ServerOptions(&lb.Service{Connection: conn})
	live, dying := testbackend.StartWith(t, opts...), testbackend.StartWith(t, opts...)
	p, err := faultproxy.New(dying.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*resolvertest.Timeout)
	defer cancel()
	svc := &lb.Service{FullName: testbackend.EchoService, Discovery: static.Config{Addresses: []string{live.Addr, p.Addr()}}, Connection: conn}
	c, err := lb.Dial(ctx, svc, lb.WithInsecure(), lb.WithBlock())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitCalled(t, ctx, c, live, dying)

	p.Freeze()
	frozen := time.Now()
	// Calls with a deadline of their own: those sent to the silent backend
	// time out until keepalive closes its connection; then every call goes
	// to the live one.
	var noticed time.Duration
	for streak := 0; streak < 50; {
		cctx, ccancel := context.WithTimeout(ctx, time.Second)
		err := testbackend.Echo(cctx, c, "Echo", wrapperspb.String(""))
		ccancel()
		if ctx.Err() != nil {
			t.Fatalf("the silent backend still takes calls %v after it froze", time.Since(frozen))
		}
		if err != nil {
			streak = 0
			noticed = time.Since(frozen)
			continue
		}
		streak++
	}
	t.Logf("the silent backend's last lost call %v after it froze", noticed)
	if noticed > 15*time.Second {
		t.Errorf("calls were lost to the silent backend for %v, want at most 13 s (keepalive 10 s + 3 s)", noticed)
	}
}

// TestKeepaliveNoGoAway: a client pinging every 10 s, idle, and a server
// with ServerOptions: 4 pings pass (grpc-go sends GOAWAY too_many_pings
// at the third ping it finds too early; one of the four may be a BDP ping
// after the last call) and the client keeps its one connection. A proxy
// counts the PING frames.
func TestKeepaliveNoGoAway(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for 3 keepalive pings, 30 s")
	}
	conn := &lb.Connection{KeepaliveTime: 10 * time.Second}
	b := testbackend.StartWith(t, lb.ServerOptions(&lb.Service{Connection: conn})...)
	p, err := faultproxy.New(b.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*resolvertest.Timeout)
	defer cancel()
	svc := &lb.Service{FullName: testbackend.EchoService, Discovery: static.Config{Addresses: []string{p.Addr()}}, Connection: conn}
	c, err := lb.Dial(ctx, svc, lb.WithInsecure(), lb.WithBlock())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitCalled(t, ctx, c, b)
	start := p.PingsUp()
	for p.PingsUp() < start+4 {
		select {
		case <-ctx.Done():
			t.Fatalf("%d pings in %v, want 4", p.PingsUp()-start, 3*resolvertest.Timeout)
		case <-time.After(100 * time.Millisecond): // polls a counter; the pings take 30-40 s
		}
	}
	if err := testbackend.Call(ctx, c); err != nil {
		t.Fatal(err)
	}
	if n := p.Accepted(); n != 1 {
		t.Errorf("the client made %d connections over 3 pings, want 1 (too_many_pings GOAWAY makes it reconnect)", n)
	}
}

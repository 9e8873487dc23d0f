package etcd_test

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/cctest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/load"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/etcd"
)

// startBackend serves grpc.health.v1 on loopback and registers it in etcd.
func startBackend(t *testing.T, endpoint, service, id string) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	healthpb.RegisterHealthServer(s, health.NewServer())
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	register(t, etcd.Config{}, endpoint, service, id, lis.Addr().String())
	return lis.Addr().String()
}

// TestEtcdRestart stops etcd for 10 s under load and starts it again on the
// same data directory: no call fails, the resolver never publishes an empty
// list, and a change made right after the restart is seen (the log gives
// how long it took).
func TestEtcdRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("10 s outage")
	}
	const outage = 10 * time.Second
	s := startEtcd(t)
	for _, id := range []string{"a", "b", "c"} {
		startBackend(t, s.Endpoint(), "fault", id)
	}
	rb, rec := cctest.Wrap(etcd.NewBuilder())
	conn, err := grpc.NewClient("etcd://"+s.Endpoint()+"/services/fault",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithResolvers(rb),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Connect() // leave IDLE: build the resolver
	rec.WaitLen(t, 3)

	client := healthpb.NewHealthClient(conn)
	l := load.Start(2, func(ctx context.Context) error {
		_, err := client.Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	})
	t.Cleanup(func() { l.Stop() })

	s.Stop()
	time.Sleep(outage) // the outage itself, not a wait for something to settle
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	// A fourth instance, written by a fresh client right after the restart.
	startBackend(t, s.Endpoint(), "fault", "d")
	rec.WaitLen(t, 4)
	converged := time.Since(restarted)
	calls, failed, firstErr := l.Stop()

	t.Logf("outage %v: %d calls, %d failed; view converged %v after the restart", outage, calls, failed, converged)
	if failed != 0 {
		t.Errorf("%d of %d calls failed during the etcd outage, want 0 (first: %v)", failed, calls, firstErr)
	}
	for i, st := range rec.States() {
		if len(st.Endpoints) == 0 {
			t.Errorf("state %d is empty: a registry failure became an empty address list", i)
		}
	}
}

package static_test

import (
	"context"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/resolvertest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/static"
)

func TestMain(m *testing.M) { resolvertest.VerifyTestMain(m) }

// TestPlainGRPCClient checks that importing the package makes the static
// scheme work with grpc.NewClient, without generated code.
func TestPlainGRPCClient(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	healthpb.RegisterHealthServer(s, health.NewServer())
	go s.Serve(lis)
	defer s.Stop()

	conn, err := grpc.NewClient("static:///"+lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("Check through static:/// = %v", err)
	}
}

func TestBadTargetNamesTheBadPart(t *testing.T) {
	for _, tc := range []struct{ target, want string }{
		{"static:///10.0.0.1:80,nohost", `address 2: bad address "nohost"`},
		{"static:///10.0.0.1:0", `port "0"`},
		{"static:///", "no addresses"},
		{"static://authority/10.0.0.1:80", `authority "authority"`},
		{"static://user:S3CRET@/10.0.0.1:80", "user info"},
		{"static:///10.0.0.1:80?token=T0KEN", "query parameters are not supported"},
	} {
		conn, err := grpc.NewClient(tc.target, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err == nil {
			// The resolver is built when the channel leaves IDLE.
			conn.Connect()
			_, err = healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
			conn.Close()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("dial %s: %v, want an error containing %q", tc.target, err, tc.want)
		}
		if err != nil && (strings.Contains(err.Error(), "S3CRET") || strings.Contains(err.Error(), "T0KEN")) {
			t.Errorf("dial %s: %v: the error shows a secret of the target", tc.target, err)
		}
	}
}

func TestConfigTarget(t *testing.T) {
	c := static.Config{Addresses: []string{"10.0.0.1:80", "10.0.0.2:80"}}
	if got, err := c.Target("svc", ""); err != nil || got != "static:///10.0.0.1:80,10.0.0.2:80" {
		t.Errorf("Target() = %q, %v", got, err)
	}
	if got, err := c.Target("svc", "127.0.0.1:9"); err != nil || got != "static:///127.0.0.1:9" {
		t.Errorf("Target(registry) = %q, %v; want the registry list", got, err)
	}
	if _, err := (static.Config{}).Target("svc", ""); err == nil {
		t.Error("Target() of an empty list succeeded")
	}
}

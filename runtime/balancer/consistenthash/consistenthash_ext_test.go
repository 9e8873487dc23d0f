package consistenthash_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/resolvertest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/testbackend"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/consistenthash"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/static"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/lb"
)

func TestMain(m *testing.M) { resolvertest.VerifyTestMain(m) }

// service is an lb.Service over bs whose Echo method hashes the request's
// "value" field; Other has no hash key.
func service(addrs []string, cfg consistenthash.Config) *lb.Service {
	return &lb.Service{
		FullName:  testbackend.EchoService,
		Discovery: static.Config{Addresses: addrs},
		Balancer:  cfg,
		Methods:   []lb.Method{{Name: "Echo", HashKey: "value"}},
	}
}

func dial(t *testing.T, svc *lb.Service) *lb.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), resolvertest.Timeout)
	defer cancel()
	c, err := lb.Dial(ctx, svc, lb.WithInsecure(), lb.WithBlock())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// owners returns the backends each key reached.
func owners(bs []*testbackend.Backend) map[string][]string {
	out := map[string][]string{}
	for _, b := range bs {
		for k := range b.Keys() {
			out[k] = append(out[k], b.Addr)
		}
	}
	return out
}

// TestKeysStick: through lb.Dial with ConsistentHash, keys of any bytes
// ("José", "日本", 0xff 0x00) work and each lands on one backend, across
// calls and after a reconnect; many keys spread over all backends; a call
// with only the header lands where the same key's requests do.
func TestKeysStick(t *testing.T) {
	bs, addrs := testbackend.StartN(t, 3)
	svc := service(addrs, consistenthash.Config{})
	ctx := context.Background()
	odd := []any{
		wrapperspb.String("José"),
		wrapperspb.String("日本"),
		wrapperspb.Bytes([]byte{0xff, 0x00}),
	}
	for round := range 2 { // the second time through a new connection
		c := dial(t, svc)
		for range 5 {
			for _, req := range odd {
				if err := testbackend.Echo(ctx, c, "Echo", req); err != nil {
					t.Fatalf("round %d: Echo(%v): %v", round, req, err)
				}
			}
		}
		for i := range 60 {
			if err := testbackend.Echo(ctx, c, "Echo", wrapperspb.String(fmt.Sprintf("user-%d", i))); err != nil {
				t.Fatal(err)
			}
		}
		// A call without a hash key field (like a stream) with the header.
		hctx := metadata.AppendToOutgoingContext(ctx, consistenthash.HashKeyHeader, "user-7")
		if err := testbackend.Echo(hctx, c, "Other", wrapperspb.String("user-7")); err != nil {
			t.Fatal(err)
		}
		// WithKey, as for a stream.
		if err := testbackend.Echo(consistenthash.WithKey(ctx, []byte("user-8")), c, "Other", wrapperspb.String("user-8")); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	used := map[string]bool{}
	for k, on := range owners(bs) {
		if len(on) != 1 {
			t.Errorf("key %q reached %d backends, want 1: %v", k, len(on), on)
		}
		used[on[0]] = true
	}
	if len(used) != 3 {
		t.Errorf("63 keys reached %d of 3 backends", len(used))
	}
}

// TestMissingKey: a request whose key is unset goes to a random backend by
// default, and fails with InvalidArgument under FailMissingKey.
func TestMissingKey(t *testing.T) {
	bs, addrs := testbackend.StartN(t, 3)
	ctx := context.Background()
	c := dial(t, service(addrs, consistenthash.Config{}))
	defer c.Close()
	// Calls without a key reach every backend (once it is READY).
	deadline, stop := context.WithTimeout(ctx, resolvertest.Timeout)
	defer stop()
	for len(owners(bs)[""]) < 3 {
		if err := testbackend.Echo(deadline, c, "Echo", wrapperspb.String("")); err != nil {
			t.Fatalf("calls without a key reached only %v: %v", owners(bs)[""], err)
		}
	}

	f := dial(t, service(addrs, consistenthash.Config{MissingKey: consistenthash.FailMissingKey}))
	defer f.Close()
	err := testbackend.Echo(ctx, f, "Echo", wrapperspb.String(""))
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("a call without a key under FailMissingKey: %v, want InvalidArgument", err)
	}
	if err := testbackend.Echo(ctx, f, "Echo", wrapperspb.String("k")); err != nil {
		t.Errorf("a call with a key under FailMissingKey: %v", err)
	}
	// A method without a hash key (a stream, say) reaches the picker,
	// which may fail it with Internal only.
	err = testbackend.Echo(ctx, f, "Other", wrapperspb.String("k"))
	if status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "no hash key") {
		t.Errorf("a call without a hash key field under FailMissingKey: %v, want Internal: no hash key", err)
	}
}

package lb

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/consistenthash"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/static"
)

// TestRingHashRoutesByHashKey runs three health servers and a RingHash
// client keyed on HealthCheckRequest.service: one key always reaches the
// same backend, and many keys reach more than one.
func TestRingHashRoutesByHashKey(t *testing.T) {
	var mu sync.Mutex
	hits := map[string]map[string]int{} // key -> backend -> calls; guarded by mu
	var addrs []string
	for range 3 {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := lis.Addr().String()
		record := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			key := req.(*healthpb.HealthCheckRequest).GetService()
			md, _ := metadata.FromIncomingContext(ctx)
			if got := md.Get(HashKeyHeader); len(got) != 1 || got[0] != key {
				t.Errorf("%s header = %v, want [%s]", HashKeyHeader, got, key)
			}
			mu.Lock()
			if hits[key] == nil {
				hits[key] = map[string]int{}
			}
			hits[key][addr]++
			mu.Unlock()
			return h(ctx, req)
		}
		s := grpc.NewServer(grpc.UnaryInterceptor(record))
		h := health.NewServer()
		// The client health-checks the service it calls.
		h.SetServingStatus("grpc.health.v1.Health", healthpb.HealthCheckResponse_SERVING)
		healthpb.RegisterHealthServer(s, h)
		go s.Serve(lis)
		t.Cleanup(s.Stop)
		addrs = append(addrs, addr)
	}
	svc := &Service{
		FullName:  "grpc.health.v1.Health",
		Discovery: static.Config{Addresses: addrs},
		Balancer:  RingHash{},
		Methods:   []Method{{Name: "Check", HashKey: "service"}},
	}
	c, err := Dial(context.Background(), svc, WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	client := healthpb.NewHealthClient(c)
	// The health service answers NOT_FOUND for unknown names; only the
	// routing matters here.
	call := func(key string) {
		t.Helper()
		if _, err := client.Check(context.Background(), &healthpb.HealthCheckRequest{Service: key}); err != nil && !strings.Contains(err.Error(), "unknown service") {
			t.Fatalf("Check(%q) = %v", key, err)
		}
	}
	for range 30 {
		call("user-42")
	}
	for i := range 30 {
		call("user-" + string(rune('a'+i)))
	}
	mu.Lock()
	defer mu.Unlock()
	if n := len(hits["user-42"]); n != 1 {
		t.Errorf("key user-42 reached %d backends, want 1: %v", n, hits["user-42"])
	}
	backends := map[string]bool{}
	for key, m := range hits {
		for b := range m {
			backends[b] = true
		}
		if len(m) != 1 {
			t.Errorf("key %s reached %d backends, want 1", key, len(m))
		}
	}
	if len(backends) < 2 {
		t.Errorf("31 keys all reached %v, want them spread over the ring", backends)
	}
}

func TestFieldValue(t *testing.T) {
	msg, err := structpb.NewStruct(map[string]any{"a": map[string]any{"b": "x"}})
	if err != nil {
		t.Fatal(err)
	}
	v := structpb.NewStringValue("s")
	for _, tc := range []struct {
		req    any
		path   string
		want   string
		wantOK bool
	}{
		{v, "string_value", "s", true},
		{structpb.NewNumberValue(2.5), "number_value", "2.5", true},
		{structpb.NewBoolValue(true), "bool_value", "true", true},
		{structpb.NewNullValue(), "null_value", "0", true},
		{&structpb.ListValue{}, "values", "", false},           // repeated
		{msg, "fields", "", false},                             // map
		{&healthpb.HealthCheckRequest{}, "service", "", false}, // unset: no presence, zero value
		{&healthpb.HealthCheckRequest{Service: "José"}, "service", "José", true},
		{wrapperspb.Bytes([]byte{0xff, 0}), "value", "\xff\x00", true},
		{wrapperspb.Int64(-42), "value", "-42", true},
		{wrapperspb.UInt64(42), "value", "42", true},
		{structpb.NewStructValue(msg), "struct_value.fields", "", false}, // a map through a set message
		{&healthpb.HealthCheckRequest{}, "nope", "", false},
		{&healthpb.HealthCheckRequest{}, "service.x", "", false}, // through a scalar
		{v, "struct_value", "", false},                           // ends at a message
		{v, "struct_value.fields", "", false},                    // unset message on the way, then a map
		{"not a proto", "x", "", false},
	} {
		var path []protoreflect.Name
		for _, s := range strings.Split(tc.path, ".") {
			path = append(path, protoreflect.Name(s))
		}
		k, ok := fieldValue(tc.req, path)
		got := ""
		if ok {
			got = string(k.appendText(nil))
		}
		if got != tc.want || ok != tc.wantOK {
			t.Errorf("fieldValue(%T, %s) = %q, %v; want %q, %v", tc.req, tc.path, got, ok, tc.want, tc.wantOK)
		}
	}
}

// TestHeaderValue: RingHash's header carries any key: printable ASCII as
// it is, anything else as "~" and base64.
func TestHeaderValue(t *testing.T) {
	for _, tc := range []struct {
		k    key
		want string
	}{
		{key{kind: protoreflect.StringKind, s: "user-42"}, "user-42"},
		{key{kind: protoreflect.StringKind, s: "José"}, "~Sm9zw6k"},
		{key{kind: protoreflect.BytesKind, b: []byte{0xff, 0}}, "~/wA"},
		{key{kind: protoreflect.Int64Kind, i: -7}, "-7"},
		{key{kind: protoreflect.BoolKind, u: 1}, "true"},
	} {
		if got := headerValue(tc.k); got != tc.want {
			t.Errorf("headerValue(%+v) = %q, want %q", tc.k, got, tc.want)
		}
	}
}

// TestKeyHashAllocatesNothing: hashing a number formats it on the stack.
func TestKeyHashAllocatesNothing(t *testing.T) {
	k := key{kind: protoreflect.Int64Kind, i: 1234567}
	if a := testing.AllocsPerRun(100, func() { k.hash() }); a != 0 {
		t.Errorf("hash of a number allocates %v times", a)
	}
	if want := consistenthash.HashString("1234567"); k.hash() != want {
		t.Errorf("hash of 1234567 = %x, want the hash of its text %x", k.hash(), want)
	}
}

// TestHashPoliciesByPointer: WithBalancer(&consistenthash.Config{...}) is
// the policy as much as the value is; the hash keys still reach it.
func TestHashPoliciesByPointer(t *testing.T) {
	methods := []Method{{Name: "Check", HashKey: "service"}}
	for _, b := range []Balancer{ConsistentHash{}, &ConsistentHash{}, RingHash{}, &RingHash{}} {
		if hashKeyInterceptor(&Service{Balancer: b, Methods: methods}) == nil {
			t.Errorf("%T: no hash key interceptor", b)
		}
	}
	if hashKeyInterceptor(&Service{Balancer: Random{}, Methods: methods}) != nil {
		t.Error("Random: a hash key interceptor")
	}
	// A nil pointer is no policy: an error, not a panic.
	if _, err := ServiceConfig(&Service{FullName: "x.Y", Balancer: (*ConsistentHash)(nil)}); err == nil || !strings.Contains(err.Error(), "nil *consistenthash.Config") {
		t.Errorf("ServiceConfig with a nil *ConsistentHash: %v, want an error", err)
	}
}

// TestCallerKeyWins: under ConsistentHash a key the caller gives (the
// header, or WithKey) is honoured over the method's hash_key field, as
// under RingHash; without one the field's hash goes on the context.
func TestCallerKeyWins(t *testing.T) {
	svc := &Service{FullName: "grpc.health.v1.Health", Balancer: ConsistentHash{},
		Methods: []Method{{Name: "Check", HashKey: "service"}}}
	ic := hashKeyInterceptor(svc)
	req := &healthpb.HealthCheckRequest{Service: "field-key"}
	// what the picker will hash: the context's hash, else the header's
	picked := func(ctx context.Context) (h uint64) {
		t.Helper()
		err := ic(ctx, "/grpc.health.v1.Health/Check", req, nil, nil, func(ctx context.Context, _ string, _, _ any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
			if v, ok := consistenthash.HashFromContext(ctx); ok {
				h = v
			} else if hv := metadata.ValueFromOutgoingContext(ctx, HashKeyHeader); len(hv) > 0 {
				h = consistenthash.HashString(hv[0])
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	ctx := context.Background()
	if got, want := picked(ctx), consistenthash.HashString("field-key"); got != want {
		t.Errorf("no caller key: hash %x, want the field's %x", got, want)
	}
	if got, want := picked(metadata.AppendToOutgoingContext(ctx, HashKeyHeader, "header-key")), consistenthash.HashString("header-key"); got != want {
		t.Errorf("header set: hash %x, want the header's %x", got, want)
	}
	if got, want := picked(consistenthash.WithKey(ctx, []byte("ctx-key"))), consistenthash.HashString("ctx-key"); got != want {
		t.Errorf("WithKey: hash %x, want its %x", got, want)
	}
}

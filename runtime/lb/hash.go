package lb

import (
	"context"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/ringhash"
)

// HashKeyHeader is the request header that RingHash hashes to choose an
// instance. For unary methods with (lb.method).hash_key the generated client
// sets it from the request field; streaming calls pick their instance before
// the first message is sent, so set it yourself:
//
//	ctx = metadata.AppendToOutgoingContext(ctx, lb.HashKeyHeader, userID)
//
// Calls without it are spread at random.
const HashKeyHeader = ringhash.HashKeyHeader

// hashKeyInterceptor returns an interceptor that sets HashKeyHeader from the
// hash key field of each unary request, or nil if no method has a hash key.
func hashKeyInterceptor(svc *Service) grpc.UnaryClientInterceptor {
	paths := map[string][]protoreflect.Name{}
	for _, m := range svc.Methods {
		if m.HashKey == "" {
			continue
		}
		var path []protoreflect.Name
		for _, seg := range strings.Split(m.HashKey, ".") {
			path = append(path, protoreflect.Name(seg))
		}
		paths["/"+svc.FullName+"/"+m.Name] = path
	}
	if len(paths) == 0 {
		return nil
	}
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if path, ok := paths[method]; ok {
			md, _ := metadata.FromOutgoingContext(ctx)
			if len(md.Get(HashKeyHeader)) == 0 {
				if v, ok := fieldValue(req, path); ok {
					ctx = metadata.AppendToOutgoingContext(ctx, HashKeyHeader, v)
				}
			}
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

// fieldValue returns the value of the field at path in req as a string. An
// unset message on the way reads as empty, like the generated getters.
func fieldValue(req any, path []protoreflect.Name) (string, bool) {
	msg, ok := req.(proto.Message)
	if !ok {
		return "", false
	}
	m := msg.ProtoReflect()
	for i, name := range path {
		fd := m.Descriptor().Fields().ByName(name)
		if fd == nil || fd.IsList() || fd.IsMap() {
			return "", false
		}
		v := m.Get(fd)
		if i < len(path)-1 {
			if fd.Message() == nil {
				return "", false
			}
			m = v.Message()
			continue
		}
		switch fd.Kind() {
		case protoreflect.MessageKind, protoreflect.GroupKind:
			return "", false
		case protoreflect.BytesKind:
			return string(v.Bytes()), true
		case protoreflect.EnumKind:
			return v.String(), true // the number, stable across renames
		default:
			return v.String(), true
		}
	}
	return "", false
}

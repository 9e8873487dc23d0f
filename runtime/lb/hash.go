package lb

import (
	"context"
	"encoding/base64"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/consistenthash"
)

// HashKeyHeader is the request header that ConsistentHash and RingHash hash
// for calls without a key of their own: streaming calls pick their
// instance before the first message is sent, so set it yourself (or, under
// ConsistentHash, consistenthash.WithKey):
//
//	ctx = metadata.AppendToOutgoingContext(ctx, lb.HashKeyHeader, userID)
//
// For unary methods with a HashKey the client hashes the request field.
const HashKeyHeader = consistenthash.HashKeyHeader

// hashKeyInterceptor returns an interceptor that hands each unary request's
// hash key to the balancer, or nil if svc's policy does not hash or no
// method has a hash key. Under ConsistentHash it puts the hash of the
// field's bytes on the call's context (any bytes work; the header is not
// sent); under RingHash, whose only input is a header, it sets
// HashKeyHeader to the value, base64 with a "~" in front when the value is
// not printable ASCII (a header cannot carry it). A key that is unset
// (proto presence, or the zero value of a field without presence) is not
// handed on: the policy's choice for calls without a key applies, and under
// consistenthash.FailMissingKey the call fails here with InvalidArgument
// (grpc-go turns that code into Internal when a picker returns it).
func hashKeyInterceptor(svc *Service) grpc.UnaryClientInterceptor {
	var header, fail bool
	switch b := svc.Balancer.(type) { // a pointer to a config is the config
	case ConsistentHash:
		fail = b.MissingKey == consistenthash.FailMissingKey
	case *ConsistentHash:
		if b == nil {
			return nil
		}
		fail = b.MissingKey == consistenthash.FailMissingKey
	case RingHash:
		header = true
	case *RingHash:
		if b == nil {
			return nil
		}
		header = true
	default:
		return nil
	}
	// The hash key of each method that has one: its field path, as
	// written and split into names.
	type hashKey struct {
		field string
		path  []protoreflect.Name
	}
	keys := map[string]hashKey{}
	for _, m := range svc.Methods {
		if m.HashKey == "" {
			continue
		}
		k := hashKey{field: m.HashKey}
		for _, seg := range strings.Split(m.HashKey, ".") {
			k.path = append(k.path, protoreflect.Name(seg))
		}
		keys["/"+svc.FullName+"/"+m.Name] = k
	}
	if len(keys) == 0 {
		return nil
	}
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if k, ok := keys[method]; ok {
			switch {
			case header:
				if len(metadata.ValueFromOutgoingContext(ctx, HashKeyHeader)) == 0 {
					if v, ok := fieldValue(req, k.path); ok {
						ctx = metadata.AppendToOutgoingContext(ctx, HashKeyHeader, headerValue(v))
					}
				}
			default:
				// A key the caller gave (WithKey, WithHash or the
				// header) wins over the field, as under RING_HASH.
				_, set := consistenthash.HashFromContext(ctx)
				if !set && len(metadata.ValueFromOutgoingContext(ctx, HashKeyHeader)) == 0 {
					v, ok := fieldValue(req, k.path)
					switch {
					case ok:
						ctx = consistenthash.WithHash(ctx, v.hash())
					case fail:
						return status.Errorf(codes.InvalidArgument, "lb: %s: the hash key %s is unset", method, k.field)
					}
				}
			}
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

// key is a hash key field's value: its bytes (strings, bytes), or a
// number or bool, which counts as its decimal text ("42", "true"), so that
// a stream with the header "42" goes where a request with 42 goes.
type key struct {
	kind protoreflect.Kind // StringKind, BytesKind, or the number's kind
	s    string
	b    []byte
	i    int64
	u    uint64
	f    float64
}

// appendText appends the key's bytes to dst.
func (k key) appendText(dst []byte) []byte {
	switch k.kind {
	case protoreflect.StringKind:
		return append(dst, k.s...)
	case protoreflect.BytesKind:
		return append(dst, k.b...)
	case protoreflect.BoolKind:
		return strconv.AppendBool(dst, k.u != 0)
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return strconv.AppendFloat(dst, k.f, 'g', -1, 64)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return strconv.AppendUint(dst, k.u, 10)
	default: // signed integers, enums (by number, stable across renames)
		return strconv.AppendInt(dst, k.i, 10)
	}
}

// hash is consistenthash's hash of the key's bytes, without allocating.
func (k key) hash() uint64 {
	switch k.kind {
	case protoreflect.StringKind:
		return consistenthash.HashString(k.s)
	case protoreflect.BytesKind:
		return consistenthash.Hash(k.b)
	}
	var buf [32]byte
	return consistenthash.Hash(k.appendText(buf[:0]))
}

// headerValue is k as a header value: its text when that is printable
// ASCII, else "~" and the base64 of its bytes.
func headerValue(k key) string {
	b := k.appendText(nil)
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return "~" + base64.RawStdEncoding.EncodeToString(b)
		}
	}
	return string(b)
}

// fieldValue returns the value of the field at path in req; ok is false
// when a field on the way or the field itself is unset (proto presence; a
// field without presence is unset at its zero value), or the path does not
// fit the message.
func fieldValue(req any, path []protoreflect.Name) (key, bool) {
	msg, ok := req.(proto.Message)
	if !ok {
		return key{}, false
	}
	m := msg.ProtoReflect()
	for i, name := range path {
		fd := m.Descriptor().Fields().ByName(name)
		if fd == nil || fd.IsList() || fd.IsMap() || !m.Has(fd) {
			return key{}, false
		}
		v := m.Get(fd)
		if i < len(path)-1 {
			if fd.Message() == nil {
				return key{}, false
			}
			m = v.Message()
			continue
		}
		k := key{kind: fd.Kind()}
		switch k.kind {
		case protoreflect.MessageKind, protoreflect.GroupKind:
			return key{}, false
		case protoreflect.StringKind:
			k.s = v.String()
		case protoreflect.BytesKind:
			k.b = v.Bytes()
		case protoreflect.EnumKind:
			k.i = int64(v.Enum())
		case protoreflect.BoolKind:
			if v.Bool() {
				k.u = 1
			}
		case protoreflect.FloatKind, protoreflect.DoubleKind:
			k.f = v.Float()
		case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
			k.u = v.Uint()
		default: // signed integers
			k.i = v.Int()
		}
		return k, true
	}
	return key{}, false
}

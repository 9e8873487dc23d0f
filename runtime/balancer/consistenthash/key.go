package consistenthash

import (
	"context"

	"github.com/cespare/xxhash/v2"
)

// HashKeyHeader is the request header hashed for calls whose context
// carries no hash: streaming calls, whose instance is picked before the
// first message is sent, and callers of plain grpc.NewClient:
//
//	ctx = metadata.AppendToOutgoingContext(ctx, consistenthash.HashKeyHeader, userID)
//
// A header value and a key of the same bytes land on the same instance.
const HashKeyHeader = "lb-hash-key"

// Hash returns the hash of key, as the picker hashes keys and header
// values (64-bit xxHash).
func Hash(key []byte) uint64 { return xxhash.Sum64(key) }

// HashString is Hash of a string, without converting it.
func HashString(key string) uint64 { return xxhash.Sum64String(key) }

// WithHash returns a context whose calls go to the instance of hash h (see
// Hash). It takes precedence over HashKeyHeader. The generated client sets
// it from each unary method's (lb.method).hash_key; set it yourself for
// streams, or for any key not in the request:
//
//	stream, err := client.Chat(consistenthash.WithKey(ctx, []byte(room)))
func WithHash(ctx context.Context, h uint64) context.Context {
	return &hashContext{Context: ctx, hash: h}
}

// WithKey is WithHash(ctx, Hash(key)).
func WithKey(ctx context.Context, key []byte) context.Context {
	return WithHash(ctx, Hash(key))
}

// HashFromContext returns the hash WithHash set on ctx.
func HashFromContext(ctx context.Context) (uint64, bool) {
	if c, ok := ctx.Value(hashContextKey{}).(*hashContext); ok {
		return c.hash, true
	}
	return 0, false
}

type hashContextKey struct{}

// hashContext carries a hash with one allocation (context.WithValue would
// take two: the context and the boxed number) and none to read it back.
type hashContext struct {
	context.Context
	hash uint64
}

func (c *hashContext) Value(key any) any {
	if key == (hashContextKey{}) {
		return c
	}
	return c.Context.Value(key)
}

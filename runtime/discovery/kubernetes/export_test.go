package kubernetes

import (
	"fmt"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/resolver"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
)

// SetWatchTimeout makes the API server end every watch after d, for the
// rest of the test.
func SetWatchTimeout(t testing.TB, d time.Duration) {
	shortWatch.Store(int64(d))
	t.Cleanup(func() { shortWatch.Store(0) })
}

// NewColdBuilder returns a builder whose watches are shared with no other
// builder's, and start from nothing.
func NewColdBuilder() resolver.Builder {
	id := fmt.Sprint(coldBuilders.Add(1))
	return discovery.NewBuilder(Scheme, func(u *url.URL) (discovery.Spec, error) { return parseWith(u, id) })
}

var coldBuilders atomic.Int64

// Package retry holds the backoff and the cancellable sleep that the
// discovery backends share.
package retry

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is the wait before retry n+1 (n from 0): base doubling up to
// limit, jittered uniformly over its upper half so that clients that failed
// together do not retry together.
func Backoff(n int, base, limit time.Duration) time.Duration {
	d := limit
	if n < 32 && base<<n > 0 && base<<n < limit {
		d = base << n
	}
	return d/2 + rand.N(d/2+1)
}

// Sleep waits for d or for ctx to end; it reports false if ctx ended. A d
// of zero or less only checks ctx.
func Sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

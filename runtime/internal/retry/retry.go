// Package retry holds the backoff that the discovery backends share (a
// wait is clock.Sleep).
package retry

import (
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

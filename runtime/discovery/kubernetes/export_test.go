package kubernetes

import (
	"testing"
	"time"
)

// SetWatchTimeout makes the API server end every watch after d, for the
// rest of the test.
func SetWatchTimeout(t testing.TB, d time.Duration) {
	shortWatch.Store(int64(d))
	t.Cleanup(func() { shortWatch.Store(0) })
}

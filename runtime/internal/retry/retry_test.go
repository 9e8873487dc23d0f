package retry

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	for _, tc := range []struct {
		n      int
		lo, hi time.Duration
	}{
		{0, 50 * time.Millisecond, 100 * time.Millisecond},
		{1, 100 * time.Millisecond, 200 * time.Millisecond},
		{3, 400 * time.Millisecond, 800 * time.Millisecond},
		{10, 5 * time.Second, 10 * time.Second},  // capped
		{100, 5 * time.Second, 10 * time.Second}, // no overflow
	} {
		for range 100 {
			if d := Backoff(tc.n, 100*time.Millisecond, 10*time.Second); d < tc.lo || d > tc.hi {
				t.Fatalf("Backoff(%d) = %v, want in [%v, %v]", tc.n, d, tc.lo, tc.hi)
			}
		}
	}
}

package outlier

import (
	"sync"
	"testing"

	"google.golang.org/grpc/connectivity"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/internal/clock"
)

// SetClock makes the package read c until restore is called.
func SetClock(c clock.Clock) (restore func()) {
	old := clk
	clk = c
	return func() { clk = old }
}

// TrackHealth returns, for the balancers built from now until the test
// ends, the health their subchannels of addr last heard from the channel
// (what an instance's end of ejection hands the policy).
func TrackHealth(t testing.TB) (health func(addr string) []connectivity.State) {
	var mu sync.Mutex
	var bs []*outlierBalancer
	built = func(b *outlierBalancer) {
		mu.Lock()
		defer mu.Unlock()
		bs = append(bs, b)
	}
	t.Cleanup(func() { built = nil })
	return func(addr string) (states []connectivity.State) {
		mu.Lock()
		defer mu.Unlock()
		for _, b := range bs {
			b.childMu.Lock()
			b.mu.Lock()
			if in := b.instances[addr]; in != nil {
				for sc := range in.subConns {
					if sc.health != nil {
						states = append(states, sc.health.ConnectivityState)
					}
				}
			}
			b.mu.Unlock()
			b.childMu.Unlock()
		}
		return states
	}
}

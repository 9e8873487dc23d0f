package slowstart

import "github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/internal/clock"

// SetClock makes the policy read c until restore is called.
func SetClock(c clock.Clock) (restore func()) {
	old := clk
	clk = c
	return func() { clk = old }
}

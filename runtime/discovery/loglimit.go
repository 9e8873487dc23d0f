package discovery

import (
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc/grpclog"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/internal/clock"
)

// Log limits: a registry full of bad entries, or one whose entries flap,
// cannot flood the log. A watch logs a burst of LogBurst lines about what
// the registry holds, then one per LogInterval; the lines left out are
// counted in the next one it logs.
const (
	LogBurst    = 10
	LogInterval = time.Second
)

// LogLimiter rate-limits the warnings of one watch (or one source) about
// what its registry holds. Its zero value is not usable: use
// NewLogLimiter.
type LogLimiter struct {
	log   grpclog.DepthLoggerV2
	clock clock.Clock

	mu      sync.Mutex
	lim     *rate.Limiter
	skipped int // lines left out since the last one logged; guarded by mu
}

// NewLogLimiter returns a LogLimiter that logs to log.
func NewLogLimiter(log grpclog.DepthLoggerV2) *LogLimiter {
	return newLogLimiter(log, clock.Real)
}

func newLogLimiter(log grpclog.DepthLoggerV2, c clock.Clock) *LogLimiter {
	return &LogLimiter{log: log, clock: c, lim: rate.NewLimiter(rate.Every(LogInterval), LogBurst)}
}

// Warningf logs a warning, unless the limit is reached: then it only
// counts it.
func (l *LogLimiter) Warningf(format string, args ...any) {
	l.mu.Lock()
	if !l.lim.AllowN(l.clock.Now(), 1) {
		l.skipped++
		l.mu.Unlock()
		return
	}
	skipped := l.skipped
	l.skipped = 0
	l.mu.Unlock()
	msg := fmt.Sprintf(format, args...)
	if skipped > 0 {
		msg += fmt.Sprintf(" (and %d more warnings left out before this one: at most %d a burst, then one per %v)", skipped, LogBurst, LogInterval)
	}
	l.log.WarningDepth(1, msg)
}

// Package load runs calls without pause from a few goroutines while a test
// breaks something, and counts what failed.
package load

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// CallTimeout bounds each call.
const CallTimeout = 2 * time.Second

// Load is a running load.
type Load struct {
	calls, failed atomic.Int64
	stop          chan struct{}
	stopOnce      sync.Once
	wg            sync.WaitGroup
	firstErr      atomic.Pointer[error]
}

// Start calls call from n goroutines until Stop.
func Start(n int, call func(ctx context.Context) error) *Load {
	l := &Load{stop: make(chan struct{})}
	for range n {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				l.do(CallTimeout, call)
			}
		}()
	}
	return l
}

// StartRate calls call rate times a second, open loop: each call leaves at
// its time whatever the earlier ones are doing, with timeout, until Stop.
func StartRate(rate int, timeout time.Duration, call func(ctx context.Context) error) *Load {
	l := &Load{stop: make(chan struct{})}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-tick.C:
			}
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				l.do(timeout, call)
			}()
		}
	}()
	return l
}

// do makes one call and counts it.
func (l *Load) do(timeout time.Duration, call func(ctx context.Context) error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	err := call(ctx)
	cancel()
	l.calls.Add(1)
	if err != nil {
		l.failed.Add(1)
		l.firstErr.CompareAndSwap(nil, &err)
	}
}

// Stop stops the callers, waits for them, and returns how many calls they
// made, how many failed, and the first error. It may be called again (from
// a t.Cleanup, say).
func (l *Load) Stop() (calls, failed int64, firstErr error) {
	l.stopOnce.Do(func() { close(l.stop) })
	l.wg.Wait()
	if p := l.firstErr.Load(); p != nil {
		firstErr = *p
	}
	return l.calls.Load(), l.failed.Load(), firstErr
}

// Failed returns how many calls have failed so far.
func (l *Load) Failed() int64 { return l.failed.Load() }

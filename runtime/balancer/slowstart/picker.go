package slowstart

import (
	"google.golang.org/grpc/balancer"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/internal/fastrand"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/internal/parent"
)

// repicks bounds how often one call asks the child again after a pick on
// a warming instance was thrown away; the last pick is kept whatever it is.
const repicks = 8

// picker passes the child's picks on, with the channel's SubConns in them,
// and thins those on warming instances (see the package doc).
type picker struct {
	child   balancer.Picker
	ramp    ramp
	ramping bool // some instance ramped when the picker was made
}

func newPicker(child balancer.Picker, r ramp, ramping bool) *picker {
	return &picker{child: child, ramp: r, ramping: ramping}
}

func (p *picker) Pick(info balancer.PickInfo) (balancer.PickResult, error) {
	for i := 0; ; i++ {
		res, err := p.child.Pick(info)
		if err != nil {
			return res, err
		}
		sc, ok := res.SubConn.(*subConn)
		if !ok {
			return res, nil
		}
		res.SubConn = sc.SubConn
		if !p.ramping || i == repicks || p.keep(sc.in) {
			return res, nil
		}
		if res.Done != nil {
			res.Done(balancer.DoneInfo{Err: parent.ErrNotUsed})
		}
	}
}

// keep reports whether a pick on in stands: always for a warm instance,
// with probability its factor for a warming one.
func (p *picker) keep(in *instance) bool {
	until := in.until.Load()
	if until == 0 {
		return true
	}
	now := clk.Nanotime()
	if now >= until {
		in.until.CompareAndSwap(until, 0) // warm from now on: no more clock readings
		return true
	}
	f := p.ramp.factor(now - in.start.Load())
	// 53 random bits as a float in [0, 1).
	return float64(fastrand.Uint64()>>11)*0x1p-53 < f
}

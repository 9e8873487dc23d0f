package parent

import (
	"errors"
	"strconv"
	"strings"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/connectivity"
)

// What a parent policy and the policies under it agree on, beyond
// grpc-go's balancer API: how the pool names the copies of an address,
// how a parent says a pick went unused, and how it picks on the side.

// AsidePicker is a picker whose picks take turns in an order that all calls
// share (round robin: each pick moves the order on). A parent that makes
// an extra pick for a call that has one already (lb_hedge's hedges) picks
// through PickAside, which chooses as Pick does on average (the same
// instances, the same shares) but leaves the order where it is, so the
// next call's pick is the one it would have been without the extra pick.
type AsidePicker interface {
	balancer.Picker
	PickAside(balancer.PickInfo) (balancer.PickResult, error)
}

// ErrNotUsed is the DoneInfo error of a pick a parent policy threw away
// (lb_hedge picks again when the call had that instance already): the
// call did not go there, so it says nothing of the instance's latency.
var ErrNotUsed = errors.New("lb: the pick was not used")

// CopyAddr is the address of copy n (from 1) of addr that package pool
// hands its child policy: addr with "#n" after it. A host:port address has
// no '#'.
func CopyAddr(addr string, n int) string { return addr + "#" + strconv.Itoa(n) }

// BaseAddr is addr without a pool copy's suffix.
func BaseAddr(addr string) string {
	if i := strings.LastIndexByte(addr, '#'); i >= 0 {
		return addr[:i]
	}
	return addr
}

// Target is the channel's target without user info or query, for the
// grpc.target label of a policy's metrics.
func Target(opts balancer.BuildOptions) string {
	u := opts.Target.URL
	u.User, u.RawQuery, u.ForceQuery = nil, "", false
	return u.String()
}

// Rank orders connectivity states by how soon a child in them may take
// calls: READY, CONNECTING, IDLE, then TRANSIENT_FAILURE (and SHUTDOWN).
func Rank(s connectivity.State) int {
	switch s {
	case connectivity.Ready:
		return 3
	case connectivity.Connecting:
		return 2
	case connectivity.Idle:
		return 1
	}
	return 0
}

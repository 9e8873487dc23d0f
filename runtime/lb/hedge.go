package lb

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/hedge"
)

// grpc-go does not hedge (grpc-go#2823): the generated client does, in a
// unary interceptor, over the lb_hedge policy, which sends each attempt of
// a call to an instance the call has not tried.

// tokens is the retry budget of the client's hedges (gRFC A6's
// retryThrottling): a failed attempt takes a token, a successful call
// gives back ratio; at or below half of max, no hedge is sent. grpc-go
// keeps its own bucket, with the same settings, for the methods' retries;
// both drain on the same failures.
type tokens struct {
	mu     sync.Mutex
	n, max float64 // guarded by mu
	ratio  float64
}

func newTokens(b *RetryBudget) *tokens {
	if b == nil {
		return nil // no budget: hedges are only bounded by MaxAttempts
	}
	return &tokens{n: float64(b.MaxTokens), max: float64(b.MaxTokens), ratio: b.TokenRatio}
}

func (t *tokens) failed() {
	if t == nil {
		return
	}
	t.mu.Lock()
	t.n = max(0, t.n-1)
	t.mu.Unlock()
}

func (t *tokens) succeeded() {
	if t == nil {
		return
	}
	t.mu.Lock()
	t.n = min(t.max, t.n+t.ratio)
	t.mu.Unlock()
}

func (t *tokens) allow() bool {
	if t == nil {
		return true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.n > t.max/2
}

// HedgeStats counts a client's hedges.
type HedgeStats struct {
	// Sent is how many hedges (attempts after the first) were sent.
	Sent int64
	// Won is how many calls a hedge answered first.
	Won int64
	// Throttled is how many hedges were not sent because the retry budget
	// was spent.
	Throttled int64
}

// hedger is the hedging of one client.
type hedger struct {
	policies map[string]*Hedging // by full method name
	budget   *tokens
	stats    struct{ sent, won, throttled atomic.Int64 }
	metrics  *hedgeMetrics // nil without WithMetrics
}

// newHedger returns the hedging of svc, or nil when no method hedges.
func newHedger(svc *Service) *hedger {
	h := &hedger{policies: map[string]*Hedging{}, budget: newTokens(budget(svc))}
	for _, m := range svc.Methods {
		if m.Hedging != nil {
			h.policies["/"+svc.FullName+"/"+m.Name] = m.Hedging
		}
	}
	if len(h.policies) == 0 {
		return nil
	}
	return h
}

// nonFatal are the codes after which a hedged call goes on with its other
// attempts: the instance failed, not the call.
func nonFatal(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.ResourceExhausted, codes.Aborted, codes.Internal, codes.Unknown:
		return true
	}
	return false
}

type attemptResult struct {
	reply proto.Message
	err   error
	n     int // the attempt's number, from 1
}

// callOutcome is what grpc-go writes through a call's options when the
// call ends (grpc.Header, grpc.Trailer, grpc.Peer) and the grpc.OnFinish
// callbacks it runs then. Each attempt of a hedged call gets options of
// its own instead of the caller's; only the attempt whose result the call
// returns hands its header, trailer and peer to the caller's, and the
// callbacks run once, with the call's error, when every attempt has ended.
type callOutcome struct {
	headers, trailers []*metadata.MD
	peers             []*peer.Peer
	onFinish          []func(error)
}

// splitOptions takes the options with an outcome out of opts.
func splitOptions(opts []grpc.CallOption) ([]grpc.CallOption, callOutcome) {
	var out callOutcome
	rest := make([]grpc.CallOption, 0, len(opts))
	for _, o := range opts {
		switch o := o.(type) {
		case grpc.HeaderCallOption:
			out.headers = append(out.headers, o.HeaderAddr)
		case *grpc.HeaderCallOption:
			out.headers = append(out.headers, o.HeaderAddr)
		case grpc.TrailerCallOption:
			out.trailers = append(out.trailers, o.TrailerAddr)
		case *grpc.TrailerCallOption:
			out.trailers = append(out.trailers, o.TrailerAddr)
		case grpc.PeerCallOption:
			out.peers = append(out.peers, o.PeerAddr)
		case *grpc.PeerCallOption:
			out.peers = append(out.peers, o.PeerAddr)
		case grpc.OnFinishCallOption:
			out.onFinish = append(out.onFinish, o.OnFinish)
		case *grpc.OnFinishCallOption:
			out.onFinish = append(out.onFinish, o.OnFinish)
		default:
			rest = append(rest, o)
		}
	}
	return rest, out
}

// attempt is one attempt's outcome, written by grpc-go when it ends.
type attempt struct {
	header, trailer metadata.MD
	peer            peer.Peer
}

// options returns rest and the options that collect what the caller
// asked for into a.
func (a *attempt) options(rest []grpc.CallOption, out *callOutcome) []grpc.CallOption {
	opts := slices.Clip(rest)
	if len(out.headers)+len(out.trailers)+len(out.peers) == 0 {
		return opts
	}
	// The peer tells whether the attempt had a stream: grpc-go writes
	// none of the three for one that had none.
	opts = append(opts, grpc.Peer(&a.peer))
	if len(out.headers) > 0 {
		opts = append(opts, grpc.Header(&a.header))
	}
	if len(out.trailers) > 0 {
		opts = append(opts, grpc.Trailer(&a.trailer))
	}
	return opts
}

// deliver hands a's outcome and err to the caller's options: its header,
// trailer and peer when it had a stream (as grpc-go, which leaves them
// alone for a call that had none), and err to each OnFinish.
func (out *callOutcome) deliver(a *attempt, err error) {
	if a.peer.Addr != nil {
		for _, h := range out.headers {
			*h = a.header
		}
		for _, t := range out.trailers {
			*t = a.trailer
		}
		for _, p := range out.peers {
			*p = a.peer
		}
	}
	for _, f := range out.onFinish {
		f(err)
	}
}

// intercept hedges the methods that hedge and passes the others through.
func (h *hedger) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	pol := h.policies[method]
	out, ok := reply.(proto.Message)
	if pol == nil || !ok {
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	rest, outcome := splitOptions(opts)
	attempts := &hedge.Attempts{}
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan attemptResult, pol.MaxAttempts)
	each := make([]attempt, pol.MaxAttempts) // by attempt number - 1; each written by its attempt only, read once all have ended
	var wg sync.WaitGroup
	sent := 0
	launch := func() {
		sent++
		n := sent
		r := out.ProtoReflect().New().Interface()
		aopts := each[n-1].options(rest, &outcome)
		nctx := hedge.WithAttempt(actx, attempts, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			results <- attemptResult{reply: r, err: invoker(nctx, method, req, r, cc, aopts...), n: n}
		}()
	}
	// hedgeIfAllowed sends one more attempt when the policy and the budget
	// let it.
	hedgeIfAllowed := func() bool {
		if sent >= pol.MaxAttempts {
			return false
		}
		if !h.budget.allow() {
			h.stats.throttled.Add(1)
			h.metrics.exhausted(ctx, method)
			return false
		}
		h.stats.sent.Add(1)
		h.metrics.sent(ctx, method)
		launch()
		return true
	}
	// finish ends the call with err, the result of attempt n: the losers
	// end with actx, and then n's outcome goes to the caller.
	finish := func(n int, err error) error {
		cancel()
		wg.Wait()
		outcome.deliver(&each[n-1], err)
		return err
	}
	launch()
	timer := time.NewTimer(pol.Delay)
	defer timer.Stop()
	pending := 1
	var last error
	lastN := 1 // the attempt whose result the call returns when none succeeds
	for pending > 0 {
		select {
		case r := <-results:
			pending--
			if r.err == nil {
				h.budget.succeeded()
				if r.n > 1 {
					h.stats.won.Add(1)
					h.metrics.won(ctx, method)
				}
				proto.Reset(out)
				proto.Merge(out, r.reply)
				return finish(r.n, nil)
			}
			h.budget.failed()
			last, lastN = r.err, r.n
			if !nonFatal(r.err) {
				return finish(r.n, r.err)
			}
			if hedgeIfAllowed() { // at once: this instance failed
				pending++
				timer.Reset(pol.Delay)
			}
		case <-timer.C:
			if hedgeIfAllowed() {
				pending++
				timer.Reset(pol.Delay)
			}
		case <-ctx.Done():
			return finish(lastN, status.FromContextError(ctx.Err()).Err())
		}
	}
	return finish(lastN, last)
}

// HedgeStats returns the client's hedge counts; zero when no method
// hedges.
func (c *Conn) HedgeStats() HedgeStats {
	if c.hedger == nil {
		return HedgeStats{}
	}
	return HedgeStats{Sent: c.hedger.stats.sent.Load(), Won: c.hedger.stats.won.Load(), Throttled: c.hedger.stats.throttled.Load()}
}

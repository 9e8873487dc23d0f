package discovery

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/cctest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/testbackend"
)

// slowBalancerName is a round_robin whose UpdateClientConnState waits for
// the gate in slowGate when it was built: a channel whose balancer is slow.
const slowBalancerName = "discovery_test_slow"

func init() { balancer.Register(slowBuilder{}) }

// gate holds the slow balancers' updates until release is closed.
type gate struct {
	entered chan struct{} // closed when the first update waits
	once    sync.Once
	release chan struct{}
}

var slowGate atomic.Pointer[gate]

type slowBuilder struct{}

func (slowBuilder) Name() string { return slowBalancerName }

func (slowBuilder) Build(cc balancer.ClientConn, opts balancer.BuildOptions) balancer.Balancer {
	return &slowBalancer{Balancer: balancer.Get("round_robin").Build(cc, opts), gate: slowGate.Load()}
}

type slowBalancer struct {
	balancer.Balancer
	gate *gate
}

func (b *slowBalancer) UpdateClientConnState(s balancer.ClientConnState) error {
	if g := b.gate; g != nil {
		g.once.Do(func() { close(g.entered) })
		<-g.release
	}
	return b.Balancer.UpdateClientConnState(s)
}

// hubBuilder builds resolvers of the test hub's watch of spec.
type hubBuilder struct {
	h    testHub
	spec Spec
}

func (b hubBuilder) Scheme() string { return "fake" }

func (b hubBuilder) Build(_ resolver.Target, cc resolver.ClientConn, opts resolver.BuildOptions) (resolver.Resolver, error) {
	return b.h.subscribe("fake:///svc", b.spec, cc, opts), nil
}

// within runs f and fails the test if it has not returned within timeout.
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(timeout):
		t.Fatalf("%s: not within %v", what, timeout)
	}
}

// callReaches makes calls through conn until one is answered by b.
func callReaches(t *testing.T, conn *grpc.ClientConn, b *testbackend.Backend) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	before := b.Calls.Load()
	for b.Calls.Load() == before {
		if err := testbackend.Call(ctx, conn); err != nil {
			t.Fatalf("call through the second channel: %v", err)
		}
	}
}

// TestSlowChannelDoesNotStallTheWatch: one channel's balancer holds its
// first update until the test has checked everything else, however long
// that takes, so nothing below can have waited for it: a second channel of
// the same watch is built, gets the source's updates (Put, Delete, Flush),
// its calls succeed, and the staleness timer fires when the clock reaches
// it. Then the slow channel is given the newest view, and nothing older.
func TestSlowChannelDoesNotStallTheWatch(t *testing.T) {
	const maxStale = 5 * time.Second
	h := newTestHub(t)
	src := newFakeSource()
	spec := fakeSpec(src, FailurePolicy{MaxStaleness: maxStale})
	bs, _ := testbackend.StartN(t, 2)

	g := &gate{entered: make(chan struct{}), release: make(chan struct{})}
	slowGate.Store(g)
	t.Cleanup(func() { slowGate.Store(nil) })
	// dial returns a channel of policy, and what its resolver gives it.
	dial := func(policy string) (*grpc.ClientConn, *cctest.ClientConn) {
		t.Helper()
		rb, rec := cctest.Wrap(hubBuilder{h: h, spec: spec})
		conn, err := grpc.NewClient("fake:///svc",
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithResolvers(rb),
			grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"`+policy+`":{}}]}`))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		within(t, "building the "+policy+" channel's resolver", conn.Connect)
		return conn, rec
	}
	var released sync.Once
	release := func() { released.Do(func() { close(g.release) }) }

	_, slowRec := dial(slowBalancerName)
	t.Cleanup(release) // before the channels close
	src.reset(t, bs[0].Addr)
	select {
	case <-g.entered:
	case <-time.After(timeout):
		t.Fatal("the slow channel's balancer was not given the state")
	}

	// The slow channel is stuck in UpdateState from here on.
	conn, rec := dial("round_robin")
	rec.WaitAddrsInOrder(t, bs[0].Addr)
	callReaches(t, conn, bs[0])

	src.do(t, func(u Updates) error {
		u.Put(Instance{ID: bs[1].Addr, Address: bs[1].Addr})
		u.Delete(bs[0].Addr)
		u.Flush()
		return nil
	})
	rec.WaitAddrsInOrder(t, bs[1].Addr)
	callReaches(t, conn, bs[1])

	src.do(t, func(u Updates) error { u.Fail(errors.New("registry down")); return nil })
	rec.WaitErr(t, "registry down")
	within(t, "the staleness timer", func() { h.clock.Advance(maxStale) })
	rec.WaitErr(t, "no good answer from the registry for 5s")
	rec.WaitAddrsInOrder(t)

	if got := slowRec.AllAddrs(); len(got) != 1 {
		t.Fatalf("the slow channel was given %v while its balancer was blocked, want only the first state", got)
	}
	release()
	slowRec.WaitAddrsInOrder(t)
	slowRec.WaitErr(t, "no good answer from the registry for 5s")
	// The newest view at once: nothing older after it, nothing in between.
	if got, want := slowRec.AllAddrs(), [][]string{{bs[0].Addr}, {}}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("the slow channel was given %v, want %v", got, want)
	}
}

// gatedCC is a channel whose UpdateState tells the test it began and
// returns what the test says.
type gatedCC struct {
	*cctest.ClientConn
	began  chan []string
	result chan error
}

func (c gatedCC) UpdateState(s resolver.State) error {
	c.began <- cctest.Addrs(s)
	err := <-c.result
	c.ClientConn.UpdateState(s)
	return err
}

// TestDeliveryInOrder: a channel busy with one state is given the newest
// offered meanwhile, never a copy older than one it was offered, and a
// state its balancer rejected again only when the watch offers it again.
func TestDeliveryInOrder(t *testing.T) {
	h := newTestHub(t)
	cc := gatedCC{ClientConn: newRecorder(), began: make(chan []string), result: make(chan error)}
	s := h.subscribe("fake:///svc", fakeSpec(newFakeSource(), FailurePolicy{}), cc, resolver.BuildOptions{})
	viewOf := func(ver uint64) view {
		st := stateOf([]resolver.Endpoint{Endpoint(fmt.Sprintf("10.0.0.%d:80", ver), Metadata{})})
		return view{stateVer: ver, state: &st}
	}
	began := func(want uint64) {
		t.Helper()
		select {
		case got := <-cc.began:
			if w := fmt.Sprintf("10.0.0.%d:80", want); !slices.Equal(got, []string{w}) {
				t.Fatalf("UpdateState(%v) began, want [%s]", got, w)
			}
		case <-time.After(timeout):
			t.Fatalf("UpdateState of state %d did not begin", want)
		}
	}

	s.offer(viewOf(1))
	began(1)
	s.offer(viewOf(3))
	s.offer(viewOf(2)) // a copy made before 3's, arriving after it
	cc.result <- nil
	began(3)
	cc.result <- nil

	s.offer(viewOf(5))
	began(5)
	s.offer(viewOf(4)) // older than 5: not given even once 5 is rejected
	cc.result <- errors.New("rejected")
	select {
	case <-s.w.resolveNow:
	case <-time.After(timeout):
		t.Fatal("a rejected state did not ask the source to look again")
	}
	s.offer(viewOf(5)) // the watch offers it again: given again
	began(5)
	cc.result <- nil

	within(t, "Close", s.Close) // waits for the delivery: nothing after it
	want := [][]string{{"10.0.0.1:80"}, {"10.0.0.3:80"}, {"10.0.0.5:80"}, {"10.0.0.5:80"}}
	if got := cc.AllAddrs(); !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("the channel was given %v, want %v", got, want)
	}
}

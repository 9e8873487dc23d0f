package cctest

import (
	"net/url"
	"testing"

	"google.golang.org/grpc/resolver"
)

// Build builds a resolver of target with b and a new ClientConn, and
// closes it when t ends (after which any report fails the test).
func Build(t testing.TB, b resolver.Builder, target string) *ClientConn {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	cc := New()
	r, err := b.Build(resolver.Target{URL: *u}, cc, resolver.BuildOptions{})
	if err != nil {
		t.Fatalf("Build(%s) = %v", target, err)
	}
	t.Cleanup(func() {
		r.Close()
		cc.Closed()
	})
	return cc
}

// Wrap returns a Builder that builds b's resolvers and records, in the
// returned ClientConn, every state and error they give the real channel.
func Wrap(b resolver.Builder) (resolver.Builder, *ClientConn) {
	rec := New()
	return &wrapped{Builder: b, rec: rec}, rec
}

type wrapped struct {
	resolver.Builder
	rec *ClientConn
}

func (w *wrapped) Build(t resolver.Target, cc resolver.ClientConn, o resolver.BuildOptions) (resolver.Resolver, error) {
	return w.Builder.Build(t, tee{ClientConn: cc, rec: w.rec}, o)
}

// tee passes reports to the channel and records them.
type tee struct {
	resolver.ClientConn
	rec *ClientConn
}

func (t tee) UpdateState(s resolver.State) error {
	t.rec.UpdateState(s)
	return t.ClientConn.UpdateState(s)
}

func (t tee) ReportError(err error) {
	t.rec.ReportError(err)
	t.ClientConn.ReportError(err)
}

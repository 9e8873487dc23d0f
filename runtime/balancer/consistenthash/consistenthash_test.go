package consistenthash

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/metadata"
)

// fixed is a child picker whose result says which child it is.
type fixed struct {
	res balancer.PickResult
	err error // as a picker of a connecting endpoint says
}

func (f *fixed) Pick(balancer.PickInfo) (balancer.PickResult, error) { return f.res, f.err }

// newTestPicker is a picker over n READY children with cfg.
func newTestPicker(n int, cfg Config) *picker {
	size := tableSize(int(max(cfg.TableSize, 65537)), n)
	p := &picker{table: newTable(backends(n), size), fail: cfg.MissingKey == FailMissingKey, bound: cfg.LoadBound, total: new(atomic.Int64), ready: n}
	for i := range n {
		st := &state{total: p.total}
		st.done = st.finish
		f := &fixed{res: balancer.PickResult{Metadata: metadata.MD{"i": {fmt.Sprint(i)}}}}
		p.children = append(p.children, child{picker: f, ready: true, st: st})
	}
	return p
}

// pick returns the child p picks for ctx, and the result.
func pick(t *testing.T, p *picker, ctx context.Context) (int, balancer.PickResult) {
	t.Helper()
	res, err := p.Pick(balancer.PickInfo{Ctx: ctx})
	if err != nil {
		t.Fatalf("Pick: %v", err)
	}
	var i int
	fmt.Sscan(res.Metadata["i"][0], &i)
	return i, res
}

func keyCtx(k string) context.Context { return WithKey(context.Background(), []byte(k)) }

// TestHeaderIsTheKey: the header and a key of the same bytes pick the same
// backend; a hash on the context wins over the header.
func TestHeaderIsTheKey(t *testing.T) {
	p := newTestPicker(10, Config{})
	other, _ := pick(t, p, keyCtx("other"))
	moved := 0
	for k := range 50 {
		key := fmt.Sprintf("key-%d", k)
		byKey, _ := pick(t, p, keyCtx(key))
		hctx := metadata.AppendToOutgoingContext(context.Background(), HashKeyHeader, key)
		if byHeader, _ := pick(t, p, hctx); byKey != byHeader {
			t.Fatalf("%q: the key picks %d, the header %d", key, byKey, byHeader)
		}
		if both, _ := pick(t, p, WithKey(hctx, []byte("other"))); both != other {
			t.Fatalf("header %q and key \"other\": picked %d, want the key's %d", key, both, other)
		}
		if byKey != other {
			moved++
		}
	}
	if moved == 0 {
		t.Fatal("50 keys all picked one backend")
	}
}

// TestNotReadyFallsThrough: a key whose backend is in TRANSIENT_FAILURE
// goes to another, the same one each time, and comes back when it is READY
// again; other keys do not move. While it is CONNECTING the key's calls
// wait for it.
func TestNotReadyFallsThrough(t *testing.T) {
	p := newTestPicker(5, Config{})
	home := map[string]int{}
	for k := range 200 {
		key := fmt.Sprint(k)
		home[key], _ = pick(t, p, keyCtx(key))
	}
	down := home["0"]
	p.children[down].ready = false
	p.ready--
	for key, h := range home {
		got, _ := pick(t, p, keyCtx(key))
		switch {
		case h == down && got == down:
			t.Fatalf("key %s picked its backend %d while it is not READY", key, down)
		case h != down && got != h:
			t.Fatalf("key %s moved from %d to %d when only %d went down", key, h, got, down)
		}
		if again, _ := pick(t, p, keyCtx(key)); again != got {
			t.Fatalf("key %s picked %d then %d", key, got, again)
		}
	}
	p.children[down].wait = true
	c := p.children[down].picker.(*fixed)
	c.err = balancer.ErrNoSubConnAvailable
	if _, err := p.Pick(balancer.PickInfo{Ctx: keyCtx("0")}); err != balancer.ErrNoSubConnAvailable {
		t.Fatalf("key 0 while its backend is connecting: %v, want to wait (%v)", err, balancer.ErrNoSubConnAvailable)
	}
	c.err = nil
	p.children[down].ready, p.children[down].wait = true, false
	p.ready++
	if got, _ := pick(t, p, keyCtx("0")); got != down {
		t.Fatalf("key 0 picked %d once its backend %d was READY again", got, down)
	}
}

// TestLoadBound: with LoadBound 1.25 one hot key spills over to other
// backends once its own holds 1.25x the mean of calls in flight, and every
// backend stays within the bound; Done gives the calls back.
func TestLoadBound(t *testing.T) {
	const n = 4
	p := newTestPicker(n, Config{LoadBound: 1.25})
	var dones []func(balancer.DoneInfo)
	hits := make([]int, n)
	for range 100 {
		i, res := pick(t, p, keyCtx("hot"))
		hits[i]++
		dones = append(dones, res.Done)
		limit := 1.25 * float64(p.total.Load()) / n
		for j, c := range p.children {
			if l := c.st.inflight.Load(); float64(l) > limit+1 {
				t.Fatalf("backend %d holds %d calls in flight, over 1.25x the mean (%.1f)", j, l, limit)
			}
		}
	}
	spread := 0
	for _, h := range hits {
		if h > 0 {
			spread++
		}
	}
	if spread < n {
		t.Errorf("100 calls of one key in flight reached %d of %d backends: %v", spread, n, hits)
	}
	for _, d := range dones {
		d(balancer.DoneInfo{})
	}
	if got := p.total.Load(); got != 0 {
		t.Errorf("%d calls in flight after every Done", got)
	}
	// Nothing in flight: the key is back on its own backend.
	home, _ := pick(t, newTestPicker(n, Config{}), keyCtx("hot"))
	if got, res := pick(t, p, keyCtx("hot")); got != home {
		t.Errorf("with nothing in flight the key picked %d, want its own %d", got, home)
	} else {
		res.Done(balancer.DoneInfo{})
	}
}

// TestMissingKeySpreads: calls without a key reach every backend, and fail
// under FailMissingKey.
func TestMissingKeySpreads(t *testing.T) {
	p := newTestPicker(5, Config{})
	seen := map[int]bool{}
	for range 200 {
		i, _ := pick(t, p, context.Background())
		seen[i] = true
	}
	if len(seen) != 5 {
		t.Errorf("200 calls without a key reached %d of 5 backends", len(seen))
	}
	f := newTestPicker(5, Config{MissingKey: FailMissingKey})
	if _, err := f.Pick(balancer.PickInfo{Ctx: context.Background()}); err != errNoKey {
		t.Errorf("Pick without a key under FailMissingKey: %v, want %v", err, errNoKey)
	}
}

func TestPickAllocatesNothing(t *testing.T) {
	p := newTestPicker(10, Config{})
	info := balancer.PickInfo{Ctx: keyCtx("user-1")}
	if a := testing.AllocsPerRun(1000, func() { p.Pick(info) }); a != 0 {
		t.Errorf("Pick allocates %v times, want 0", a)
	}
	b := newTestPicker(10, Config{LoadBound: 1.25})
	if a := testing.AllocsPerRun(1000, func() {
		res, _ := b.Pick(info)
		res.Done(balancer.DoneInfo{})
	}); a != 0 {
		t.Errorf("Pick+Done with a load bound allocates %v times, want 0", a)
	}
}

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct {
		js   string
		want Config
		err  bool
	}{
		{js: ``, want: Config{TableSize: DefaultTableSize}},
		{js: `{}`, want: Config{TableSize: DefaultTableSize}},
		{js: `{"tableSize":65537,"loadBound":1.25,"missingKey":"fail"}`, want: Config{TableSize: 65537, LoadBound: 1.25, MissingKey: FailMissingKey}},
		{js: `{"missingKey":"spread"}`, want: Config{TableSize: DefaultTableSize}},
		{js: `{"tableSize":65536}`, err: true}, // not prime
		{js: `{"tableSize":5000017}`, err: true},
		{js: `{"loadBound":0.5}`, err: true},
		{js: `{"missingKey":"drop"}`, err: true},
		{js: `{"tableSizes":3}`, err: true}, // unknown field
	} {
		got, err := ParseConfig([]byte(tc.js))
		if tc.err {
			if err == nil {
				t.Errorf("ParseConfig(%s) = %+v, want an error", tc.js, got)
			}
			continue
		}
		if err != nil || *got != tc.want {
			t.Errorf("ParseConfig(%s) = %+v, %v; want %+v", tc.js, got, err, tc.want)
		}
	}
	// The typed config round-trips through its JSON.
	c := Config{TableSize: 65537, LoadBound: 1.5, MissingKey: FailMissingKey}
	js, _ := json.Marshal(c.BalancerConfig())
	if got, err := ParseConfig(js); err != nil || *got != c {
		t.Errorf("ParseConfig(%s) = %+v, %v; want %+v", js, got, err, c)
	}
}

func BenchmarkPick(b *testing.B) {
	for _, n := range []int{3, 10, 100} {
		for _, bound := range []float64{0, 1.25} {
			b.Run(fmt.Sprintf("endpoints=%d/bound=%v", n, bound), func(b *testing.B) {
				p := newTestPicker(n, Config{LoadBound: bound})
				info := balancer.PickInfo{Ctx: keyCtx("user-1")}
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						res, _ := p.Pick(info)
						if res.Done != nil {
							res.Done(balancer.DoneInfo{})
						}
					}
				})
			})
		}
	}
}

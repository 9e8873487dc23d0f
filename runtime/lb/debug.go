package lb

import (
	"cmp"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	channelzpb "google.golang.org/grpc/channelz/grpc_channelz_v1"
	channelzservice "google.golang.org/grpc/channelz/service" // turns channelz on

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/describe"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
)

// DebugHandler returns the live page of the process: every shared watch
// (its instances with their metadata, how long ago the registry confirmed
// them, the last error, the failure policy), every balanced client that
// Dial opened and that is not closed (its policy and config, each
// instance's connectivity state and calls from grpc-go's channelz, and
// what its policy keeps of it, through package describe), and
// every server registration (status, re-registrations, the last shutdown
// report). It serves an HTML page that works without JavaScript and
// refreshes itself with it, and the same data as JSON at ?format=json or
// at "json" under the path it is mounted on:
//
//	mux.Handle("/debug/lb/", http.StripPrefix("/debug/lb", lb.DebugHandler()))
//
// It shows no secret: targets lose their user info and query, as in logs.
// It reads what the runtime and grpc-go keep anyway (this package turns
// grpc-go's channelz on, as importing its channelz service does); nothing
// is added to the pick path. Serve it on a port only operators reach.
func DebugHandler() http.Handler { return debugHandler{} }

type debugHandler struct{}

func (debugHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	snap := takeSnapshot(r.Context(), time.Now())
	w.Header().Set("Cache-Control", "no-store")
	if r.URL.Query().Get("format") == "json" || strings.HasSuffix(r.URL.Path, "/json") || r.URL.Path == "json" {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(snap)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = debugPage.Execute(w, snap)
}

// debugSnapshot is what the page shows; its JSON is the page's JSON.
type debugSnapshot struct {
	Time          time.Time           `json:"time"`
	Watches       []debugWatch        `json:"watches"`
	Clients       []debugClient       `json:"clients"`
	Registrations []debugRegistration `json:"registrations"`
}

type debugWatch struct {
	Scheme      string `json:"scheme"`
	Target      string `json:"target"`
	Policy      string `json:"failurePolicy"`
	Subscribers int    `json:"subscribers"`
	// Confirmed is how long ago the registry last gave or confirmed the
	// instances, rounded; ConfirmedSeconds the same in seconds, -1 if it
	// never did.
	Confirmed        string          `json:"confirmed"`
	ConfirmedSeconds float64         `json:"confirmedSeconds"`
	LastError        string          `json:"lastError,omitempty"`
	FailingFor       string          `json:"failingFor,omitempty"`
	Instances        []debugInstance `json:"instances"`
}

type debugInstance struct {
	ID       string            `json:"id"`
	Address  string            `json:"address"`
	Weight   uint32            `json:"weight,omitempty"`
	Zone     string            `json:"zone,omitempty"`
	Version  string            `json:"version,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

type debugClient struct {
	Target string `json:"target"`
	Policy string `json:"policy"`
	Config string `json:"config"`
	// State and the call counts are the channel's, from channelz; empty
	// when channelz does not know the channel.
	State     string          `json:"state"`
	Calls     debugCalls      `json:"calls"`
	Instances []debugEndpoint `json:"instances"`
}

type debugCalls struct {
	Started   int64 `json:"started"`
	Succeeded int64 `json:"succeeded"`
	Failed    int64 `json:"failed"`
	InFlight  int64 `json:"inFlight"`
}

type debugEndpoint struct {
	Address string     `json:"address"`
	State   string     `json:"state"`
	Calls   debugCalls `json:"calls"`
	// Policy is what the client's policy keeps of the instance ("latency
	// 1.2ms, in flight 3", "weight 5"); empty when it keeps nothing.
	Policy string `json:"policy,omitempty"`
}

type debugRegistration struct {
	Service       string         `json:"service"`
	Backend       string         `json:"backend"`
	InstanceID    string         `json:"instanceId"`
	Address       string         `json:"address"`
	Status        string         `json:"status"`
	Registrations uint64         `json:"registrations"`
	Shutdown      *debugShutdown `json:"shutdown,omitempty"`
}

type debugShutdown struct {
	Services    []string `json:"services"`
	Watchers    int      `json:"watchers"`
	Propagation string   `json:"propagation"`
	Drain       string   `json:"drain"`
	Forced      bool     `json:"forced"`
}

// live is what the page lists besides the watches: the balanced clients
// Dial opened and Close has not closed, and the registrations Register
// made, with the last few a Shutdown ended. Only Dial, Close, Register
// and Shutdown change it; nothing on the call path reads it.
var live = struct {
	mu    sync.Mutex // guards the fields below
	seq   uint64
	conns map[*Conn]*liveConn
	regs  map[*Registration]*liveRegistration
	ended []*liveRegistration // shut down, newest last, at most maxEnded
}{conns: map[*Conn]*liveConn{}, regs: map[*Registration]*liveRegistration{}}

// maxEnded bounds how many shut down registrations the page keeps.
const maxEnded = 16

type liveConn struct {
	seq       uint64
	rawTarget string // the channel's, as channelz names it
	target    string // without user info and query
	policy    string
	config    string
	// internalStreams is how many streams grpc-go keeps open on each
	// READY connection besides calls: the client-side health check's
	// Watch, and the ORCA load report stream when the config asks for one.
	internalStreams int64
}

type liveRegistration struct {
	r          *Registration
	seq        uint64
	backend    string
	instanceID string
	addr       string
}

// trackConn adds c, dialed to target with the service config sc, to the
// page.
func trackConn(c *Conn, target, sc string) {
	lc := &liveConn{rawTarget: c.cc.Target(), target: redactTarget(target)}
	var parsed struct {
		LoadBalancingConfig []map[string]json.RawMessage `json:"loadBalancingConfig"`
		HealthCheckConfig   json.RawMessage              `json:"healthCheckConfig"`
	}
	if json.Unmarshal([]byte(sc), &parsed) == nil {
		if len(parsed.LoadBalancingConfig) > 0 {
			for name, cfg := range parsed.LoadBalancingConfig[0] {
				lc.policy, lc.config = policyChain(name, cfg), string(cfg)
			}
		}
		if parsed.HealthCheckConfig != nil {
			lc.internalStreams++
		}
	}
	if strings.Contains(strings.ReplaceAll(sc, " ", ""), `"enableOobLoadReport":true`) {
		lc.internalStreams++
	}
	live.mu.Lock()
	defer live.mu.Unlock()
	live.seq++
	lc.seq = live.seq
	live.conns[c] = lc
}

// policyChain names the policy of a loadBalancingConfig entry with the
// layers around it, the outermost first: "lb_outlier > round_robin".
func policyChain(name string, cfg json.RawMessage) string {
	chain := name
	for range 8 { // layers.go has fewer
		var parent struct {
			ChildPolicy []map[string]json.RawMessage `json:"childPolicy"`
		}
		if json.Unmarshal(cfg, &parent) != nil || len(parent.ChildPolicy) == 0 || len(parent.ChildPolicy[0]) != 1 {
			break
		}
		for n, c := range parent.ChildPolicy[0] {
			chain, cfg = chain+" > "+n, c
		}
	}
	return chain
}

// untrackConn removes c from the page.
func untrackConn(c *Conn) {
	live.mu.Lock()
	defer live.mu.Unlock()
	delete(live.conns, c)
}

// trackRegistration adds r, of svc at addr, to the page.
func trackRegistration(r *Registration, svc *Service, registry, addr, id string) {
	lr := &liveRegistration{r: r, addr: addr, instanceID: id, backend: "none"}
	if svc.Discovery != nil {
		if t, err := svc.Discovery.Target(svc.Name, registry); err == nil {
			lr.backend, _, _ = strings.Cut(t, ":")
		}
	}
	if r.registrar != nil && id == "" {
		lr.instanceID = defaultInstanceID(svc.Name, addr)
	}
	live.mu.Lock()
	defer live.mu.Unlock()
	live.seq++
	lr.seq = live.seq
	live.regs[r] = lr
}

// endRegistrations moves the registrations of st, which Shutdown took
// down, to the page's last few shut down.
func endRegistrations(st *serverState) {
	st.mu.Lock()
	regs := slices.Clone(st.regs)
	st.mu.Unlock()
	live.mu.Lock()
	defer live.mu.Unlock()
	for _, r := range regs {
		if lr, ok := live.regs[r]; ok {
			delete(live.regs, r)
			live.ended = append(live.ended, lr)
		}
	}
	if n := len(live.ended) - maxEnded; n > 0 {
		live.ended = slices.Delete(live.ended, 0, n)
	}
}

// redactTarget returns target without user info and query, which could
// hold a secret.
func redactTarget(target string) string {
	u, err := url.Parse(target)
	if err != nil {
		return "(target not shown: it does not parse)"
	}
	if u.Scheme == "" {
		return u.Path
	}
	return discovery.Redact(u)
}

func takeSnapshot(ctx context.Context, now time.Time) debugSnapshot {
	snap := debugSnapshot{Time: now, Watches: []debugWatch{}, Clients: []debugClient{}, Registrations: []debugRegistration{}}
	for _, w := range discovery.Watches() {
		snap.Watches = append(snap.Watches, watchOf(w, now))
	}
	live.mu.Lock()
	conns := make([]*liveConn, 0, len(live.conns))
	for _, lc := range live.conns {
		conns = append(conns, lc)
	}
	regs := make([]*liveRegistration, 0, len(live.regs)+len(live.ended))
	for _, lr := range live.regs {
		regs = append(regs, lr)
	}
	regs = append(regs, live.ended...)
	live.mu.Unlock()

	slices.SortFunc(conns, func(a, b *liveConn) int { return cmp.Compare(a.seq, b.seq) })
	channels := channelzChannels(ctx)
	// channelz names a channel by its target only: the clients of one
	// target take its channels in the order both were made.
	taken := map[string]int{}
	for _, lc := range conns {
		c := debugClient{Target: lc.target, Policy: lc.policy, Config: lc.config, Instances: []debugEndpoint{}}
		chs := channels[lc.rawTarget]
		if i := taken[lc.rawTarget]; i < len(chs) {
			taken[lc.rawTarget] = i + 1
			c.State, c.Calls = stateAndCalls(chs[i].GetData())
			c.Instances = subchannelsOf(ctx, chs[i], lc.internalStreams)
		}
		snap.Clients = append(snap.Clients, c)
	}
	slices.SortStableFunc(snap.Clients, func(a, b debugClient) int { return strings.Compare(a.Target, b.Target) })

	slices.SortFunc(regs, func(a, b *liveRegistration) int { return cmp.Compare(a.seq, b.seq) })
	for _, lr := range regs {
		snap.Registrations = append(snap.Registrations, registrationOf(lr))
	}
	return snap
}

func watchOf(w discovery.WatchInfo, now time.Time) debugWatch {
	d := debugWatch{
		Scheme:           w.Key.Scheme,
		Target:           w.Key.String(),
		Policy:           w.Key.Policy,
		Subscribers:      w.Subscribers,
		Confirmed:        "never",
		ConfirmedSeconds: -1,
		Instances:        []debugInstance{},
	}
	if d.Policy == "" {
		d.Policy = "keep last good (default)"
	}
	if !w.ConfirmedAt.IsZero() {
		age := max(now.Sub(w.ConfirmedAt), 0)
		d.Confirmed = roundAge(age) + " ago"
		d.ConfirmedSeconds = age.Seconds()
	}
	if w.Err != nil {
		d.LastError = w.Err.Error()
	}
	if !w.FailingSince.IsZero() {
		d.FailingFor = roundAge(max(now.Sub(w.FailingSince), 0))
	}
	for _, in := range w.Endpoints {
		d.Instances = append(d.Instances, debugInstance{
			ID: in.ID, Address: in.Address,
			Weight: in.Metadata.Weight, Zone: in.Metadata.Zone, Version: in.Metadata.Version,
			Metadata: in.Metadata.Custom,
		})
	}
	return d
}

func roundAge(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

func registrationOf(lr *liveRegistration) debugRegistration {
	r := lr.r
	d := debugRegistration{Service: r.service, Backend: lr.backend, InstanceID: lr.instanceID, Address: lr.addr}
	rep := r.LastShutdown()
	switch err := r.Status(); {
	case rep.Services != nil:
		d.Status = "shut down"
	case r.registrar == nil:
		d.Status = "serving (no registry)"
	case err == nil:
		d.Status = "registered"
	default:
		d.Status = err.Error()
	}
	if c, ok := r.registrar.(discovery.RegistrationCounter); ok {
		d.Registrations = c.Registrations()
	}
	if rep.Services != nil {
		d.Shutdown = &debugShutdown{
			Services:    rep.Services,
			Watchers:    rep.Watchers,
			Propagation: rep.Propagation.Round(time.Microsecond).String(),
			Drain:       rep.Drain.Round(time.Microsecond).String(),
			Forced:      rep.Forced,
		}
	}
	return d
}

// channelz is grpc-go's channelz service, called in process: its public
// way to read the channels' states and call counts.
var channelz = sync.OnceValue(func() channelzServer {
	var c channelzCapture
	channelzservice.RegisterChannelzServiceToServer(&c)
	return c.srv
})

type channelzServer interface {
	GetTopChannels(context.Context, *channelzpb.GetTopChannelsRequest) (*channelzpb.GetTopChannelsResponse, error)
	GetSubchannel(context.Context, *channelzpb.GetSubchannelRequest) (*channelzpb.GetSubchannelResponse, error)
}

// channelzCapture is a grpc.ServiceRegistrar that keeps the service
// registered on it.
type channelzCapture struct{ srv channelzServer }

func (c *channelzCapture) RegisterService(_ *grpc.ServiceDesc, impl any) {
	c.srv = impl.(channelzServer)
}

// channelzChannels returns the top channels by target, in the order they
// were made.
func channelzChannels(ctx context.Context) map[string][]*channelzpb.Channel {
	out := map[string][]*channelzpb.Channel{}
	var start int64
	for {
		resp, err := channelz().GetTopChannels(ctx, &channelzpb.GetTopChannelsRequest{StartChannelId: start})
		if err != nil {
			return out
		}
		for _, ch := range resp.GetChannel() {
			t := ch.GetData().GetTarget()
			out[t] = append(out[t], ch)
			start = max(start, ch.GetRef().GetChannelId()+1)
		}
		if resp.GetEnd() || len(resp.GetChannel()) == 0 {
			break
		}
	}
	for _, chs := range out {
		slices.SortFunc(chs, func(a, b *channelzpb.Channel) int {
			return cmp.Compare(a.GetRef().GetChannelId(), b.GetRef().GetChannelId())
		})
	}
	return out
}

// subchannelsOf returns ch's subchannels, one per connection to an
// instance, by address, with what the channel's policy keeps of each.
//
// channelz counts on a subchannel every stream grpc-go opens on it, its
// own too: the health check's Watch (and ORCA's load report stream) stay
// in flight as long as the connection is READY, so every instance would
// show a call in flight at rest. internal of them are taken off the calls
// in flight of a READY subchannel. A server without the health service
// ends the Watch at once (UNIMPLEMENTED, counted as failed): its instance
// then shows one call in flight less than it has, never less than 0.
func subchannelsOf(ctx context.Context, ch *channelzpb.Channel, internal int64) []debugEndpoint {
	out := []debugEndpoint{}
	policy := describe.Channel(ch.GetRef().GetChannelId())
	for _, ref := range ch.GetSubchannelRef() {
		resp, err := channelz().GetSubchannel(ctx, &channelzpb.GetSubchannelRequest{SubchannelId: ref.GetSubchannelId()})
		if err != nil {
			continue // closed since
		}
		data := resp.GetSubchannel().GetData()
		e := debugEndpoint{Address: data.GetTarget()}
		e.State, e.Calls = stateAndCalls(data)
		if e.State == "READY" {
			e.Calls.InFlight = max(e.Calls.InFlight-internal, 0)
		}
		e.Policy = policy[e.Address]
		if base, _, ok := strings.Cut(e.Address, "#"); ok && e.Policy == "" {
			e.Policy = policy[base] // a copy lb_pool made of the address
		}
		out = append(out, e)
	}
	slices.SortStableFunc(out, func(a, b debugEndpoint) int { return strings.Compare(a.Address, b.Address) })
	return out
}

func stateAndCalls(d *channelzpb.ChannelData) (string, debugCalls) {
	c := debugCalls{Started: d.GetCallsStarted(), Succeeded: d.GetCallsSucceeded(), Failed: d.GetCallsFailed()}
	c.InFlight = max(c.Started-c.Succeeded-c.Failed, 0)
	s := d.GetState().GetState()
	return strings.TrimPrefix(s.String(), "STATE_"), c
}

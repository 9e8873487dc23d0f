// Package describe is the seam through which the balancers of this module
// show the state they keep of each endpoint (a latency score, calls in
// flight, a weight) on lb.DebugHandler's live page:
//
//	// in a balancer's Build, with the channel's BuildOptions
//	if id, ok := describe.ChannelID(opts); ok {
//		unregister := describe.Register(id, Name, func() map[string]string { ... })
//		// call unregister in Close
//	}
//
//	// in the page, for a channel channelz lists
//	states := describe.Channel(ch.GetRef().GetChannelId())
//
// A description is read only when the page asks; nothing is added to the
// pick path.
package describe

import (
	"strconv"
	"strings"
	"sync"

	"google.golang.org/grpc/balancer"
)

// Func describes a balancer's endpoints: a short text by address (the
// endpoint's first, as the resolver gave it).
type Func func() map[string]string

// registry holds the describers of the balancers built and not closed, by
// the channelz ID of their channel, each under its layer: the policy, and
// each parent around it (lb_outlier's "ejected until …", lb_slow_start's
// "warming (37%)"). A layer has more than one describer while grpc-go
// switches the channel's policy gracefully; the newest describes it.
var registry = struct {
	mu        sync.Mutex // guards byChannel
	byChannel map[int64][]*entry
}{byChannel: map[int64][]*entry{}}

type entry struct {
	layer string
	f     Func
}

// Register makes f describe the endpoints of the channel whose channelz ID
// is id, as the layer named layer (a policy's name), until the returned
// func is called.
func Register(id int64, layer string, f Func) (unregister func()) {
	p := &entry{layer: layer, f: f}
	registry.mu.Lock()
	defer registry.mu.Unlock()
	registry.byChannel[id] = append(registry.byChannel[id], p)
	return sync.OnceFunc(func() {
		registry.mu.Lock()
		defer registry.mu.Unlock()
		es := registry.byChannel[id]
		for i, q := range es {
			if q == p {
				es = append(es[:i:i], es[i+1:]...)
				break
			}
		}
		if len(es) == 0 {
			delete(registry.byChannel, id)
		} else {
			registry.byChannel[id] = es
		}
	})
}

// Channel returns the descriptions of the endpoints of the channel whose
// channelz ID is id, by address: each layer's text, the layers in the
// order they were first registered (the outermost parent first, as
// grpc-go builds them), joined by ", ". nil when no balancer of the
// channel describes its endpoints.
func Channel(id int64) map[string]string {
	registry.mu.Lock()
	var order []string
	newest := map[string]Func{}
	for _, e := range registry.byChannel[id] {
		if _, ok := newest[e.layer]; !ok {
			order = append(order, e.layer)
		}
		newest[e.layer] = e.f
	}
	registry.mu.Unlock()
	if len(order) == 0 {
		return nil
	}
	out := map[string]string{}
	for _, layer := range order {
		for addr, text := range newest[layer]() {
			switch {
			case text == "":
			case out[addr] == "":
				out[addr] = text
			default:
				out[addr] += ", " + text
			}
		}
	}
	return out
}

// ChannelID returns the channelz ID of the channel a balancer is built
// for. grpc-go's BuildOptions.ChannelzParent names it ("Channel #12", or
// "Channel #3 Channel #12" for a nested one) but exports no ID: its name
// is the public way to it. ok is false without a channelz parent (a test
// building the balancer by hand).
func ChannelID(opts balancer.BuildOptions) (id int64, ok bool) {
	if opts.ChannelzParent == nil {
		return 0, false
	}
	s := opts.ChannelzParent.String()
	i := strings.LastIndexByte(s, '#')
	if i < 0 || !strings.HasSuffix(s[:i], "Channel ") {
		return 0, false
	}
	id, err := strconv.ParseInt(s[i+1:], 10, 64)
	return id, err == nil
}

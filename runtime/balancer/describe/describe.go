// Package describe is the seam through which the balancers of this module
// show the state they keep of each endpoint (a latency score, calls in
// flight, a weight) on lb.DebugHandler's live page:
//
//	// in a balancer's Build, with the channel's BuildOptions
//	if id, ok := describe.ChannelID(opts); ok {
//		unregister := describe.Register(id, func() map[string]string { ... })
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
	"maps"
	"strconv"
	"strings"
	"sync"

	"google.golang.org/grpc/balancer"
)

// Func describes a balancer's endpoints: a short text by address (the
// endpoint's first, as the resolver gave it).
type Func func() map[string]string

// registry holds the describers of the balancers built and not closed, by
// the channelz ID of their channel. A channel has more than one while
// grpc-go switches its policy gracefully; the newest describes it.
var registry = struct {
	mu        sync.Mutex // guards byChannel
	byChannel map[int64][]*Func
}{byChannel: map[int64][]*Func{}}

// Register makes f describe the endpoints of the channel whose channelz ID
// is id, until the returned func is called.
func Register(id int64, f Func) (unregister func()) {
	p := &f
	registry.mu.Lock()
	defer registry.mu.Unlock()
	registry.byChannel[id] = append(registry.byChannel[id], p)
	return sync.OnceFunc(func() {
		registry.mu.Lock()
		defer registry.mu.Unlock()
		fs := registry.byChannel[id]
		for i, q := range fs {
			if q == p {
				fs = append(fs[:i:i], fs[i+1:]...)
				break
			}
		}
		if len(fs) == 0 {
			delete(registry.byChannel, id)
		} else {
			registry.byChannel[id] = fs
		}
	})
}

// Channel returns the descriptions of the endpoints of the channel whose
// channelz ID is id, by address; nil when no balancer of it describes its
// endpoints.
func Channel(id int64) map[string]string {
	registry.mu.Lock()
	fs := registry.byChannel[id]
	var f Func
	if len(fs) > 0 {
		f = *fs[len(fs)-1]
	}
	registry.mu.Unlock()
	if f == nil {
		return nil
	}
	return maps.Clone(f())
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

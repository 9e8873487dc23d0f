package dns

import (
	"context"
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/secrettest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
)

// answers is a NetResolver that gives the fuzzer's answers.
type answers struct {
	ips  []string
	srvs []*net.SRV
}

func (a answers) LookupHost(context.Context, string) ([]string, error) { return a.ips, nil }

func (a answers) LookupSRV(context.Context, string, string, string) (string, []*net.SRV, error) {
	return "", a.srvs, nil
}

// FuzzLookup: DNS answers (A and SRV) never panic the source; every
// instance it makes that the discovery loop keeps (ParseAddress accepts
// it) carries the answer's port.
func FuzzLookup(f *testing.F) {
	f.Add("10.0.0.1,10.0.0.2", "a.test.", uint16(9000), uint16(5), true)
	f.Add("fd00::2,not-an-ip,", "b.test.", uint16(0), uint16(0), false)
	f.Add("127.0.0.1:80", "", uint16(65535), uint16(1), true)
	f.Fuzz(func(t *testing.T, ips, target string, port, weight uint16, srv bool) {
		a := answers{ips: strings.Split(ips, ","), srvs: []*net.SRV{{Target: target, Port: port, Weight: weight}}}
		s := &source{t: lookupTarget(srv), net: a}
		insts, _, err := s.lookup(context.Background())
		if err != nil {
			return
		}
		want := "8080"
		if srv {
			want = strconv.Itoa(int(port))
		}
		for _, in := range insts {
			addr, err := discovery.ParseAddress(in.Address)
			if err != nil {
				continue // the loop drops it, with a reason
			}
			if _, p, _ := net.SplitHostPort(addr); p != want {
				t.Fatalf("answer %q %q:%d made %q, want port %s", ips, target, port, addr, want)
			}
		}
	})
}

// lookupTarget is an SRV target, or an A target on port 8080.
func lookupTarget(srv bool) target {
	if srv {
		return target{host: "svc.test", srv: true}
	}
	return target{host: "svc.test", port: "8080"}
}

// FuzzTarget: an lbdns target never panics the parser.
func FuzzTarget(f *testing.F) {
	secrettest.FuzzTarget(f, []string{
		"lbdns:///greeter.internal:50051?refresh=10s",
		"lbdns://127.0.0.1:8600/greeter.service.consul?record=srv",
		"lbdns://8600/svc.test:80", "lbdns:///:80", "lbdns:///h:99999", "lbdns:///h?record=mx",
	}, func(u *url.URL) error {
		_, err := parseTarget(u)
		return err
	})
}

package discovery

import (
	"net"
	"strconv"
	"testing"
)

// FuzzParseAddress: ParseAddress never panics; what it accepts is a
// host:port with a port of 1-65535 that it accepts again unchanged.
func FuzzParseAddress(f *testing.F) {
	for _, s := range []string{"127.0.0.1:50051", "[::1]:443", "[::ffff:127.0.0.1]:1", "host.example:80", "10.0.0.1", "[1:2]:50051", "999.999.999.999:1", "a\x00b:1", ":80", "host:0", "host:65536", "[fe80::1%eth0]:80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out, err := ParseAddress(s)
		if err != nil {
			return
		}
		again, err := ParseAddress(out)
		if err != nil || again != out {
			t.Fatalf("ParseAddress(%q) = %q, then ParseAddress(%q) = %q, %v", s, out, out, again, err)
		}
		_, port, err := net.SplitHostPort(out)
		if err != nil {
			t.Fatalf("ParseAddress(%q) = %q: %v", s, out, err)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			t.Fatalf("ParseAddress(%q) = %q: port %q", s, out, port)
		}
	})
}

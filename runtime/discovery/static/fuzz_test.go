package static

import (
	"testing"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
)

// FuzzParseList: a static address list never panics the parser; every
// instance of an accepted list is an address ParseAddress accepts.
func FuzzParseList(f *testing.F) {
	for _, s := range []string{"10.0.0.1:50051,10.0.0.2:50051", "[::1]:1", "", ",", "a:1,a:1", "h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		insts, err := parseList(s)
		if err != nil {
			return
		}
		for _, in := range insts {
			if again, err := discovery.ParseAddress(in.Address); err != nil || again != in.Address {
				t.Fatalf("parseList(%q) gave %q, which ParseAddress gives as %q, %v", s, in.Address, again, err)
			}
		}
	})
}

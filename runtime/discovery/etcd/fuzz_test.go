package etcd

import (
	"net/url"
	"testing"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/secrettest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
)

// FuzzParseValue: a registry value of either format never panics; an
// accepted one has an address ParseAddress accepts, and survives being
// written and read again.
func FuzzParseValue(f *testing.F) {
	for _, s := range []string{
		"10.0.0.1:50051",
		`{"Addr":"10.0.0.1:50051","Metadata":{"weight":3,"zone":"z1","version":"v2","team":"x"}}`,
		`{"Op":0,"Addr":"[::1]:1","Metadata":null}`,
		`{"Op":1,"Addr":"10.0.0.1:1"}`,
		`{"Addr":"10.0.0.1:1","Metadata":{"weight":"3"}}`,
		`{"Addr":"10.0.0.1:1","Metadata":{"weight":-1}}`,
		`{"Addr":"10.0.0.1:1","Metadata":{"registered_at":"2030-01-02T03:04:05.000000006+01:00"}}`,
		`{"Addr":"10.0.0.1:1","Metadata":{"registered_at":"0001-01-01T00:00:00+01:00"}}`,
		`{"Addr":"10.0.0.1:1","Metadata":"flat"}`,
		`{`, "", "  10.0.0.2:80\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		addr, md, _, err := parseValue(v)
		if err != nil {
			return
		}
		if again, err := discovery.ParseAddress(addr); err != nil || again != addr {
			t.Fatalf("parseValue(%q) = address %q, which ParseAddress gives as %q, %v", v, addr, again, err)
		}
		for _, plain := range []bool{true, false} {
			enc := encodeValue(discovery.Instance{Address: addr, Metadata: md}, plain)
			addr2, md2, _, err := parseValue([]byte(enc))
			if err != nil || addr2 != addr || (!plain && !md2.Equal(md)) {
				t.Fatalf("parseValue(%q) = %q, %+v; written as %q and read again: %q, %+v, %v", v, addr, md, enc, addr2, md2, err)
			}
		}
	})
}

// FuzzTarget: an etcd target never panics the parser, and a password in it
// never appears in the error.
func FuzzTarget(f *testing.F) {
	secrettest.FuzzTarget(f, []string{
		"etcd://127.0.0.1:2379/services/greeter",
		"etcd://user:s3cr3t-pw@127.0.0.1:2379,127.0.0.2:2379/services/greeter?prefix=/x",
		"etcd:///greeter", "etcd://[::1]:2379//", "etcd://h:1/a/../b", "etcd://h:99999/x",
	}, func(u *url.URL) error {
		_, err := newBuilder().parse(u)
		return err
	})
}

package etcd

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
)

func TestParseValue(t *testing.T) {
	for _, tc := range []struct {
		name, value string
		addr        string
		md          discovery.Metadata
		wantErr     string
		wantWarn    string
	}{
		{name: "plain (go-kit)", value: "10.0.0.1:50051", addr: "10.0.0.1:50051"},
		{name: "plain with newline", value: "10.0.0.1:50051\n", addr: "10.0.0.1:50051"},
		{name: "naming/endpoints JSON", value: `{"Op":0,"Addr":"10.0.0.1:1","Metadata":null}`, addr: "10.0.0.1:1"},
		{name: "JSON without Op", value: `{"Addr":"h.local:2"}`, addr: "h.local:2"},
		{name: "metadata", value: `{"Addr":"10.0.0.1:1","Metadata":{"weight":3,"zone":"z","version":"1.2","team":"core","n":5}}`,
			addr: "10.0.0.1:1", md: discovery.Metadata{Weight: 3, Zone: "z", Version: "1.2", Custom: map[string]string{"team": "core", "n": "5"}}},
		{name: "registration time", value: `{"Addr":"10.0.0.1:1","Metadata":{"registered_at":"2030-01-02T04:04:05.000000006+01:00"}}`,
			addr: "10.0.0.1:1", md: discovery.Metadata{RegisteredAt: time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)}},
		{name: "zone and region", value: `{"Addr":"10.0.0.1:1","Metadata":{"zone":"us-east-1a","region":"us-east-1"}}`,
			addr: "10.0.0.1:1", md: discovery.Metadata{Zone: "us-east-1a", Region: "us-east-1"}},
		{name: "Kubernetes' zone and region keys", value: `{"Addr":"10.0.0.1:1","Metadata":{"topology.kubernetes.io/zone":"a","topology.kubernetes.io/region":"r"}}`,
			addr: "10.0.0.1:1", md: discovery.Metadata{Zone: "a", Region: "r"}},
		{name: "our keys win over Kubernetes'", value: `{"Addr":"10.0.0.1:1","Metadata":{"topology.kubernetes.io/zone":"k","zone":"a","region":"r","topology.kubernetes.io/region":"kr"}}`,
			addr: "10.0.0.1:1", md: discovery.Metadata{Zone: "a", Region: "r"}},
		{name: "string weight", value: `{"Addr":"10.0.0.1:1","Metadata":{"weight":"7"}}`, addr: "10.0.0.1:1", md: discovery.Metadata{Weight: 7}},
		{name: "non-map metadata is ignored", value: `{"Addr":"10.0.0.1:1","Metadata":"x"}`, addr: "10.0.0.1:1"},
		{name: "bad JSON", value: `{"Addr":`, wantErr: "bad JSON"},
		{name: "delete op", value: `{"Op":1,"Addr":"10.0.0.1:1"}`, wantErr: "Op 1"},
		{name: "port 0", value: "10.0.0.1:0", wantErr: `port "0"`},
		{name: "port 70000", value: `{"Addr":"10.0.0.1:70000"}`, wantErr: `port "70000"`},
		{name: "empty host", value: ":80", wantErr: "empty host"},
		{name: "empty", value: "", wantErr: "want host:port"},
		// A bad weight is ignored and said; the instance is kept.
		{name: "negative weight", value: `{"Addr":"10.0.0.1:1","Metadata":{"weight":-1,"zone":"z"}}`, addr: "10.0.0.1:1", md: discovery.Metadata{Zone: "z"}, wantWarn: "weight -1"},
		{name: "fractional weight", value: `{"Addr":"10.0.0.1:1","Metadata":{"weight":1.5}}`, addr: "10.0.0.1:1", wantWarn: "weight 1.5"},
		{name: "word weight", value: `{"Addr":"10.0.0.1:1","Metadata":{"weight":"heavy"}}`, addr: "10.0.0.1:1", wantWarn: "weight heavy"},
		{name: "bad registration time", value: `{"Addr":"10.0.0.1:1","Metadata":{"registered_at":"monday","zone":"z"}}`, addr: "10.0.0.1:1", md: discovery.Metadata{Zone: "z"}, wantWarn: "registered_at monday"},
		{name: "numeric registration time", value: `{"Addr":"10.0.0.1:1","Metadata":{"registered_at":1700000000}}`, addr: "10.0.0.1:1", wantWarn: "registered_at 1.7e+09"},
		{name: "10 KB", value: "10.0.0.1:1" + strings.Repeat(" ", 10240), wantErr: "10250 bytes"},
	} {
		addr, md, warn, err := parseValue([]byte(tc.value))
		if (warn != nil) != (tc.wantWarn != "") || warn != nil && !strings.Contains(warn.Error(), tc.wantWarn) {
			t.Errorf("%s: warning %v, want one containing %q", tc.name, warn, tc.wantWarn)
		}
		if tc.wantErr != "" {
			if !errors.Is(err, ErrValue) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: parseValue() error = %v, want ErrValue containing %q", tc.name, err, tc.wantErr)
			}
			continue
		}
		if err != nil || addr != tc.addr {
			t.Errorf("%s: parseValue() = %q, %v; want %q", tc.name, addr, err, tc.addr)
		}
		if diff := cmp.Diff(tc.md, md); diff != "" {
			t.Errorf("%s: metadata (-want +got):\n%s", tc.name, diff)
		}
	}
}

func TestEncodeValueRoundTrips(t *testing.T) {
	inst := discovery.Instance{Address: "10.0.0.1:1", Metadata: discovery.Metadata{Weight: 2, Zone: "z", Region: "r", Version: "v",
		RegisteredAt: time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC), Custom: map[string]string{"k": "v"}}}
	for _, plain := range []bool{false, true} {
		addr, md, _, err := parseValue([]byte(encodeValue(inst, plain)))
		if err != nil || addr != inst.Address {
			t.Fatalf("parseValue(encodeValue(plain=%v)) = %q, %v", plain, addr, err)
		}
		want := inst.Metadata
		if plain {
			want = discovery.Metadata{}
		}
		if diff := cmp.Diff(want, md); diff != "" {
			t.Errorf("plain=%v: metadata (-want +got):\n%s", plain, diff)
		}
	}
}

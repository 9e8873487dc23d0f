package discovery

import (
	"errors"
	"strings"
	"testing"
)

func TestParseAddress(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		wantErr  string
	}{
		{in: "10.0.0.1:80", want: "10.0.0.1:80"},
		{in: "host.local:65535", want: "host.local:65535"},
		{in: "[::1]:50051", want: "[::1]:50051"},
		{in: "[0:0::1]:50051", want: "[::1]:50051"},
		{in: "host", wantErr: "want host:port"},
		{in: ":80", wantErr: "empty host"},
		{in: "h:0", wantErr: `port "0"`},
		{in: "h:70000", wantErr: `port "70000"`},
		{in: "h:-1", wantErr: `port "-1"`},
		{in: "a b:1", wantErr: `host "a b"`},
		{in: "user@h:1", wantErr: `host "user@h"`},
		// Hosts that can never be dialled.
		{in: "[127.0.0.1:5000]:50051", wantErr: `host "127.0.0.1:5000"`},
		{in: "[1:2]:50051", wantErr: `host "1:2"`},
		{in: "a\x00b:1", wantErr: `host "a\x00b"`},
		{in: "999.999.999.999:1", wantErr: "neither an IP address nor a host name"},
		{in: "[127.0.0.1:45489]:45489", wantErr: `host "127.0.0.1:45489"`},
		{in: "-a.b:1", wantErr: "starts or ends with '-'"},
		{in: "a..b:1", wantErr: "label is empty"},
		// One address, one spelling.
		{in: "[::ffff:127.0.0.1]:80", want: "127.0.0.1:80"},
		{in: "_grpc._tcp.svc.local:80", want: "_grpc._tcp.svc.local:80"},
		{in: "svc.local.:80", want: "svc.local.:80"},
		// The character named is the one written, not one of its bytes.
		{in: "bücher.example:50051", wantErr: `character 'ü' is not allowed`},
		{in: "b\xfccher.example:50051", wantErr: `byte 0xfc is not allowed`},
		{in: "xn--bcher-kva.example:50051", want: "xn--bcher-kva.example:50051"},
		// Names inet_aton (a cgo resolver) would read as an IPv4 address:
		// refused as a dotted-decimal 127.1 is; names merely holding
		// numbers are fine.
		{in: "127.1:50051", wantErr: `last label "1" is a number`},
		{in: "0x7f.1:50051", wantErr: `last label "1" is a number`},
		{in: "0x7f000001:50051", wantErr: `last label "0x7f000001" is a number`},
		{in: "1.0X1f:50051", wantErr: `last label "0X1f" is a number`},
		{in: "0177.0.0.01:50051", wantErr: `last label "01" is a number`},
		{in: "host.0x:50051", wantErr: `last label "0x" is a number`},
		{in: "host.09.:50051", wantErr: `last label "09" is a number`},
		{in: "0x7f.example:50051", want: "0x7f.example:50051"},
		{in: "1e100.net:443", want: "1e100.net:443"},
		{in: "host.0xg:1", want: "host.0xg:1"},
		{in: "10.0.0.1.nip.io:80", want: "10.0.0.1.nip.io:80"},
	} {
		got, err := ParseAddress(tc.in)
		if tc.wantErr != "" {
			if !errors.Is(err, ErrBadAddress) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseAddress(%q) = %q, %v; want an ErrBadAddress containing %q", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseAddress(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestCheckServiceName(t *testing.T) {
	for _, tc := range []struct {
		name    string
		slash   bool
		wantErr string // "" for none
	}{
		{name: "helloworld.Greeter"},
		{name: "team/greeter", slash: true},
		{name: "team/greeter", wantErr: "'/' is not allowed here"},
		{name: "team//greeter", slash: true, wantErr: "empty segment"},
		{name: "", wantErr: "1 to 255 characters"},
		{name: "bücher", wantErr: `character 'ü' is not allowed`},
		{name: "b\xfccher", wantErr: `byte 0xfc is not allowed`},
	} {
		err := CheckServiceName(tc.name, tc.slash)
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("CheckServiceName(%q, %v) = %v, want an error containing %q", tc.name, tc.slash, err, tc.wantErr)
		}
	}
}

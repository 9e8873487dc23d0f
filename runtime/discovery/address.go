package discovery

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ErrBadAddress is wrapped by the errors of ParseAddress.
var ErrBadAddress = errors.New("bad address")

// ParseAddress checks that s is "host:port" that can be dialled: the host
// an IP address or a DNS name, the port in 1-65535. It returns it in
// canonical form: an IPv6 host compressed, an IPv4-mapped IPv6 host as
// IPv4 (so that both spellings of one address are one instance).
//
// A name whose last label is a number (decimal digits, or 0x and hex
// digits) is refused, as the WHATWG URL parser refuses a host that "ends in
// a number": inet_aton, which a cgo resolver uses, reads 127.1, 0x7f.1 and
// 0177.0.0.01 as 127.0.0.1, so such a name is an IPv4 address in another
// spelling (write it dotted-decimal) or nothing (no top-level domain is
// numeric). Labels before the last may be numbers ("10.0.0.1.nip.io").
func ParseAddress(s string) (string, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", fmt.Errorf("%w %q: want host:port", ErrBadAddress, s)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return "", fmt.Errorf("%w %q: port %q is not in 1-65535", ErrBadAddress, s, port)
	}
	if host == "" {
		return "", fmt.Errorf("%w %q: empty host", ErrBadAddress, s)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return netip.AddrPortFrom(ip.Unmap(), uint16(p)).String(), nil
	}
	if err := checkHostName(host); err != nil {
		return "", fmt.Errorf("%w %q: host %q %v", ErrBadAddress, s, host, err)
	}
	return net.JoinHostPort(host, port), nil
}

// checkHostName checks that h is a DNS name (RFC 1123 labels; '_' allowed,
// as service names use it) that does not end in a number, which would make
// it an IP address to inet_aton (see ParseAddress).
func checkHostName(h string) error {
	name := strings.TrimSuffix(h, ".")
	if len(name) == 0 || len(name) > 253 {
		return errors.New("is not a host name: 1 to 253 characters")
	}
	for label := range strings.SplitSeq(name, ".") {
		if len(label) == 0 || len(label) > 63 {
			return errors.New("is not a host name: a label is empty or longer than 63 characters")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return errors.New("is not a host name: a label starts or ends with '-'")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			switch {
			case c >= '0' && c <= '9':
			case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '-', c == '_':
			case c >= utf8.RuneSelf:
				return fmt.Errorf("is not a host name: %s is not allowed (an internationalized name is written in its ASCII form, xn--...)", char(label[i:]))
			default:
				return fmt.Errorf("is not a host name: %s is not allowed", char(label[i:]))
			}
		}
	}
	if last := name[strings.LastIndexByte(name, '.')+1:]; isNumber(last) {
		return fmt.Errorf("is neither an IP address nor a host name: its last label %q is a number (inet_aton reads such a name as an IPv4 address)", last)
	}
	return nil
}

// isNumber reports whether label is what the WHATWG URL parser and
// inet_aton take for a number: decimal digits (or octal, with a leading
// 0), or 0x or 0X and hex digits, none included.
func isNumber(label string) bool {
	digits := "0123456789"
	if len(label) >= 2 && label[0] == '0' && (label[1] == 'x' || label[1] == 'X') {
		label, digits = label[2:], "0123456789abcdefABCDEF"
	} else if label == "" {
		return false
	}
	for i := 0; i < len(label); i++ {
		if strings.IndexByte(digits, label[i]) < 0 {
			return false
		}
	}
	return true
}

// CheckServiceName checks that name can be a service's name in a registry:
// letters, digits, '-', '_' and '.', at most 255 characters (what Consul's
// DNS interface and every target can carry); with slash, also '/' between
// non-empty segments (an etcd key path).
func CheckServiceName(name string, slash bool) error {
	if name == "" || len(name) > 255 {
		return fmt.Errorf("service name %q: 1 to 255 characters", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		case c == '/' && slash:
			if i == 0 || i == len(name)-1 || name[i-1] == '/' {
				return fmt.Errorf("service name %q: an empty segment between '/'", name)
			}
		case c == '/':
			return fmt.Errorf("service name %q: '/' is not allowed here (letters, digits, '-', '_', '.')", name)
		default:
			return fmt.Errorf("service name %q: %s is not allowed (letters, digits, '-', '_', '.')", name, char(name[i:]))
		}
	}
	return nil
}

// char names the character s starts with, for an error: the rune as
// written, or the byte when s does not start with valid UTF-8.
func char(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	if r == utf8.RuneError && n <= 1 {
		return fmt.Sprintf("byte %#x", s[0])
	}
	return fmt.Sprintf("character %q", r)
}

// Package secrettest checks that a package's secrets (passwords, tokens)
// never show in what it logs or in its errors, for tests: sentinel
// secrets, a Scanner that checks every log line for them, and a fuzz test
// of a target parser's errors.
//
//	var scan = &secrettest.Scanner{}
//
//	var password = secrettest.Secret("pw-4f1d6c")
//
//	func TestMain(m *testing.M) {
//		grpclog.SetLoggerV2(grpclog.NewLoggerV2(scan, io.Discard, io.Discard))
//		os.Exit(scan.Verdict(m.Run()))
//	}
package secrettest

import (
	"flag"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
)

var (
	secretsMu sync.Mutex
	secrets   []string // guarded by secretsMu
)

// Secret registers s as a sentinel secret (a password, a token) of the
// package's tests, which no log line may show, and returns it. Declare
// sentinels as package variables, so they are registered before any test
// logs.
func Secret(s string) string {
	secretsMu.Lock()
	defer secretsMu.Unlock()
	secrets = append(secrets, s)
	return s
}

// Scanner is a log writer that checks every line written to it for every
// Secret, keeping only the lines that show one.
type Scanner struct {
	mu    sync.Mutex
	lines int      // guarded by mu
	hits  []string // guarded by mu
}

func (s *Scanner) Write(p []byte) (int, error) {
	secretsMu.Lock()
	list := secrets
	secretsMu.Unlock()
	text := string(p)
	n := strings.Count(strings.TrimSuffix(text, "\n"), "\n") + 1
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines += n
	for _, secret := range list {
		if strings.Contains(text, secret) {
			s.hits = append(s.hits, strings.TrimSuffix(text, "\n"))
			break
		}
	}
	return len(p), nil
}

// Result returns how many lines were scanned and those that showed a
// secret.
func (s *Scanner) Result() (lines int, hits []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lines, slices.Clone(s.hits)
}

// Verdict returns the exit code of a test binary whose tests returned
// code, once the scan is taken into account: 1 if a line showed a Secret,
// or if the whole suite (no -run, no -short) passed without logging a line
// (a scan of nothing proves nothing); code otherwise. It says why on
// stderr, and with -v prints the scan's count.
func (s *Scanner) Verdict(code int) int {
	lines, hits := s.Result()
	secretsMu.Lock()
	n := len(secrets)
	secretsMu.Unlock()
	switch {
	case len(hits) > 0:
		fmt.Fprintf(os.Stderr, "FAIL: %d of %d log lines show a secret:\n%s\n", len(hits), lines, strings.Join(hits, "\n"))
		return 1
	case lines == 0 && code == 0 && !testing.Short() && flag.Lookup("test.run").Value.String() == "":
		fmt.Fprintln(os.Stderr, "FAIL: the secret scan saw no log line")
		return 1
	case testing.Verbose():
		fmt.Printf("secret scan: %d log lines, none shows any of %d secrets\n", lines, n)
	}
	return code
}

// FuzzTarget fuzzes a scheme's target parser from seeds: a URL that parses
// never panics parse, and a password it carries never shows in parse's
// error.
func FuzzTarget(f *testing.F, seeds []string, parse func(*url.URL) error) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := url.Parse(s)
		if err != nil {
			return
		}
		err = parse(u)
		if err == nil || u.User == nil {
			return
		}
		if pw, ok := u.User.Password(); ok && len(pw) >= 6 && strings.Contains(err.Error(), pw) {
			t.Fatalf("parse(%q): the error %q shows the password", s, err)
		}
	})
}

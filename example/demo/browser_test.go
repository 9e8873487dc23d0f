package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

var updateScreenshot = flag.Bool("update-screenshot", false, "write the live page's screenshot to docs/live-page.png")

// chromium is Debian's headless browser, which the Makefile and .ci/run
// install.
const chromium = "/usr/bin/chromium"

// browserTimeout bounds one run of the browser.
const browserTimeout = 30 * time.Second

// subchannelRow is a balanced client's instance on the page: address,
// state, calls started.
var subchannelRow = regexp.MustCompile(`<tr class="subchannel" data-address="([^"]+)"><td>[^<]*</td><td class="[A-Z_]*">([A-Z_]+)</td><td class="n">(\d+)</td>`)

// TestLivePageInBrowser runs the demo with its live page and opens the
// page in headless Chromium, whose script refreshes it from the JSON
// before the DOM is read: the client's three instances are READY with
// calls; after one server shut down its instance is gone from the client
// and the watch, and its registration shows it shut down.
func TestLivePageInBrowser(t *testing.T) {
	if _, err := os.Stat(chromium); err != nil {
		if os.Getenv("LB_REQUIRE_TOOLS") == "1" {
			t.Fatalf("%s: %v (install Debian's chromium package: make tools)", chromium, err)
		}
		t.Skipf("%s is missing: install Debian's chromium package to run the browser test", chromium)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out strings.Builder
	var stopped string
	var alive []string
	check := func(ctx context.Context, url, stage string) error {
		servers := serversOf(out.String())
		if len(servers) != 3 {
			return fmt.Errorf("the demo's output names %d servers, want 3:\n%s", len(servers), out.String())
		}
		switch stage {
		case "up":
			if *updateScreenshot {
				if err := screenshot(ctx, t, url, filepath.Join("..", "..", "docs", "live-page.png")); err != nil {
					return err
				}
			}
			dom, err := dumpDOM(ctx, t, url)
			if err != nil {
				return err
			}
			rows := rowsOf(dom)
			for _, s := range servers {
				r, ok := rows[s]
				if !ok || r.state != "READY" || r.started < 1 {
					return fmt.Errorf("stage %s: instance %s: %+v (shown: %v), want READY with calls:\n%s", stage, s, r, ok, dom)
				}
			}
			if !strings.Contains(dom, `<tr class="instance"><td>`) || !strings.Contains(dom, "registered") {
				return fmt.Errorf("stage %s: the page shows no watch instance or no registration:\n%s", stage, dom)
			}
		case "after shutdown":
			stopped = servers[0]
			alive = servers[1:]
			// The channel drops the instance when its resolver update
			// reaches the balancer: read the page again until it shows
			// that, within the deadline.
			deadline, cancel := context.WithTimeout(ctx, browserTimeout)
			defer cancel()
			var dom string
			for {
				var err error
				if dom, err = dumpDOM(deadline, t, url); err != nil {
					return fmt.Errorf("stage %s: %w (last page:\n%s)", stage, err, dom)
				}
				rows := rowsOf(dom)
				_, shown := rows[stopped]
				// Gone from the client and from the watch's instances;
				// its registration (which names its address too) is
				// listed as shut down.
				ok := !shown && !watchShows(dom, stopped) && strings.Contains(dom, "<td>shut down</td>")
				for _, s := range alive {
					r := rows[s]
					ok = ok && r.state == "READY" && r.started > 0
				}
				if ok {
					return nil
				}
				if deadline.Err() != nil {
					return fmt.Errorf("stage %s: the page still shows %s, or not the two left READY, or no shut down registration:\n%s", stage, stopped, dom)
				}
			}
		}
		return nil
	}
	start := time.Now()
	if err := runWith(ctx, &out, "", livePage{Addr: "127.0.0.1:0", Check: check}); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	if stopped == "" {
		t.Fatalf("the page was never checked after the shutdown:\n%s", out.String())
	}
	t.Logf("demo and browser checks: %v", time.Since(start).Round(time.Millisecond))
}

// watchInstance is an instance of a watch on the page: its address.
var watchInstance = regexp.MustCompile(`<tr class="instance"><td>[^<]*</td><td>([^<]+)</td>`)

// watchShows reports whether a watch on the page lists an instance at addr.
func watchShows(dom, addr string) bool {
	for _, m := range watchInstance.FindAllStringSubmatch(dom, -1) {
		if m[1] == addr {
			return true
		}
	}
	return false
}

type row struct {
	state   string
	started int
}

func rowsOf(dom string) map[string]row {
	rows := map[string]row{}
	for _, m := range subchannelRow.FindAllStringSubmatch(dom, -1) {
		n, _ := strconv.Atoi(m[3])
		rows[m[1]] = row{state: m[2], started: n}
	}
	return rows
}

// serversOf returns the servers' addresses from the demo's output.
func serversOf(out string) []string {
	_, rest, ok := strings.Cut(out, "greeter servers, registered in etcd under ")
	if !ok {
		return nil
	}
	line, _, _ := strings.Cut(rest, "\n")
	_, list, _ := strings.Cut(line, ": ")
	return strings.Split(list, ", ")
}

func browser(ctx context.Context, t *testing.T, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, browserTimeout)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir(), "--virtual-time-budget=3000"}
	cmd := exec.CommandContext(ctx, chromium, append(base, args...)...)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("chromium %v: %w\n%s", args, err, stderr.String())
	}
	return stdout.Bytes(), nil
}

func dumpDOM(ctx context.Context, t *testing.T, url string) (string, error) {
	b, err := browser(ctx, t, "--dump-dom", url)
	return string(b), err
}

func screenshot(ctx context.Context, t *testing.T, url, file string) error {
	abs, err := filepath.Abs(file)
	if err != nil {
		return err
	}
	if _, err := browser(ctx, t, "--screenshot="+abs, "--window-size=1280,900", "--hide-scrollbars", url); err != nil {
		return err
	}
	b, err := os.ReadFile(abs)
	if err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
		return fmt.Errorf("screenshot %s: not a PNG (%v)", abs, err)
	}
	return nil
}

package freshmodule

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/lb"
)

const (
	guide  = "../../docs/getting-started.md"
	module = "github.com/protoc-gen-go-lb/protoc-gen-go-lb"
)

// A step is one marked block of the guide: a script to run or a file to
// write.
type step struct {
	line int    // of the block's first code line in the guide
	file string // the path to write it to; "" for a script
	code string
}

var (
	runMarker  = regexp.MustCompile(`^<!--\s*run\s*-->$`)
	fileMarker = regexp.MustCompile(`^<!--\s*file:\s*(\S+)\s*-->$`)
	fence      = regexp.MustCompile("^(```+)\\s*([\\w+-]*)")
)

// readGuide returns the guide's marked blocks, in order.
func readGuide(t *testing.T, path string) []step {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var steps []step
	var pending *step // a marker seen, its block not yet opened
	var cur *step     // a marked block being read
	var marker string
	inBlock := false
	s := bufio.NewScanner(f)
	for n := 1; s.Scan(); n++ {
		line := s.Text()
		if inBlock {
			if strings.TrimSpace(line) == marker {
				inBlock = false
				if cur != nil {
					steps = append(steps, *cur)
					cur = nil
				}
				continue
			}
			if cur != nil {
				cur.code += line + "\n"
			}
			continue
		}
		if m := fence.FindStringSubmatch(line); m != nil {
			inBlock, marker = true, m[1]
			if pending != nil {
				if pending.file == "" && m[2] != "sh" {
					t.Fatalf("%s:%d: <!-- run --> before a %q block, want sh", guide, n, m[2])
				}
				cur, pending = pending, nil
				cur.line = n + 1
			}
			continue
		}
		switch trimmed := strings.TrimSpace(line); {
		case runMarker.MatchString(trimmed):
			pending = &step{}
		case fileMarker.MatchString(trimmed):
			pending = &step{file: fileMarker.FindStringSubmatch(trimmed)[1]}
		case trimmed != "" && pending != nil:
			t.Fatalf("%s:%d: a marker is not followed by a code block", guide, n)
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if inBlock || pending != nil {
		t.Fatalf("%s: ends inside a block or after a marker", guide)
	}
	return steps
}

// pinned matches the versions of this module that the guide's commands
// name.
var pinned = regexp.MustCompile(regexp.QuoteMeta(module) + `(?:/[\w/-]+)?@(\S+)`)

// versionLine matches the header lines that name the compiler, which buf
// and protoc fill in differently.
var versionLine = regexp.MustCompile(`(?m)^//\s+(- )?protoc\s+.*$`)

// TestGettingStarted follows docs/getting-started.md from an empty
// directory to a call.
func TestGettingStarted(t *testing.T) {
	buf := os.Getenv("BUF")
	if buf == "" {
		buf, _ = exec.LookPath("buf")
	}
	protoc, _ := exec.LookPath("protoc")
	if buf == "" || protoc == "" {
		msg := fmt.Sprintf("needs buf ($BUF or on PATH; got %q) and protoc on PATH (got %q)", buf, protoc)
		if os.Getenv("LB_REQUIRE_TOOLS") == "1" {
			t.Fatal(msg + "; LB_REQUIRE_TOOLS=1 (make test installs them)")
		}
		t.Skip(msg + "; make test installs them")
	}
	buf, err := filepath.Abs(buf)
	if err != nil {
		t.Fatal(err)
	}
	checkout, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}

	steps := readGuide(t, guide)
	var scripts int
	for _, s := range steps {
		if s.file != "" {
			continue
		}
		scripts++
		for _, m := range pinned.FindAllStringSubmatch(s.code, -1) {
			if m[1] != "v"+lb.Version {
				t.Errorf("%s:%d: %s, want @v%s (lb.Version)", guide, s.line, m[0], lb.Version)
			}
		}
	}
	if scripts == 0 {
		t.Fatalf("%s: no <!-- run --> block", guide)
	}
	// The README's quick start pins the same version.
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range pinned.FindAllStringSubmatch(string(readme), -1) {
		if m[1] != "v"+lb.Version {
			t.Errorf("README.md: %s, want @v%s (lb.Version)", m[0], lb.Version)
		}
	}

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	env := environ(filepath.Dir(buf))
	tmp := t.TempDir()
	dir := tmp
	var fromBuf map[string]string
	start := time.Now()
	for _, s := range steps {
		where := fmt.Sprintf("%s:%d", guide, s.line)
		if s.file != "" {
			path := filepath.Join(dir, filepath.FromSlash(s.file))
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(s.code), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		stepStart := time.Now()
		stdout := run(ctx, t, where, dir, env, s.code)
		t.Logf("%s: %.1fs", where, time.Since(stepStart).Seconds())
		if dir == tmp {
			// The first script makes the module: the test's one addition
			// is the replace, as nothing is published.
			mods, _ := filepath.Glob(filepath.Join(tmp, "*", "go.mod"))
			if len(mods) != 1 {
				t.Fatalf("%s: the first script made %d modules (%q), want 1", where, len(mods), mods)
			}
			dir = filepath.Dir(mods[0])
			run(ctx, t, "the test's replace", dir, env, "go mod edit -replace="+module+"="+checkout)
		}
		switch {
		case strings.Contains(s.code, "buf generate"):
			fromBuf = generated(t, dir)
		case strings.Contains(s.code, "protoc "):
			if fromBuf == nil {
				t.Fatalf("%s: protoc runs before buf generate", where)
			}
			if diff := cmp.Diff(fromBuf, generated(t, dir)); diff != "" {
				t.Errorf("%s: protoc's files differ from buf's (-buf +protoc):\n%s", where, diff)
			}
		case strings.Contains(s.code, "go run ."):
			if !strings.Contains(stdout, "hello, world\n") {
				t.Errorf("%s: go run . printed %q, want hello, world", where, stdout)
			}
		}
	}
	if fromBuf == nil {
		t.Errorf("%s: no buf generate", guide)
	}
	t.Logf("the guide ran in %.1fs", time.Since(start).Seconds())
}

// environ is the test's environment for the guide's commands: offline,
// from the caches, with buf on PATH.
func environ(bufDir string) []string {
	set := map[string]string{
		"GOPROXY":     "off",
		"GOSUMDB":     "off",
		"GOFLAGS":     "",
		"GOWORK":      "off",
		"GOTOOLCHAIN": "local",
		"PATH":        bufDir + string(os.PathListSeparator) + os.Getenv("PATH"),
	}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := set[k]; !ok {
			env = append(env, kv)
		}
	}
	for k, v := range set {
		env = append(env, k+"="+v)
	}
	return env
}

// run runs script with bash in dir and returns its standard output; it
// fails the test, with the script and all it printed, if the script fails.
func run(ctx context.Context, t *testing.T, where, dir string, env []string, script string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = dir
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n$ %s\n%s%s", where, err, strings.ReplaceAll(strings.TrimSpace(script), "\n", "\n$ "), stdout.String(), stderr.String())
	}
	return stdout.String()
}

// generated returns the .go files under gen/ by path, with the compiler
// versions of their headers blanked.
func generated(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	root := filepath.Join(dir, "gen")
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		files[filepath.ToSlash(rel)] = versionLine.ReplaceAllString(string(b), "// protoc VERSION")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("nothing generated under %s", root)
	}
	return files
}

package docsnippets

import (
	"bufio"
	"errors"
	"fmt"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// root is the module's root, where README.md is.
const root = "../.."

// markdownFiles are the files these tests read: README.md and docs/*.md
// (not docs/bench, whose files `make bench` writes).
func markdownFiles(t *testing.T) []string {
	t.Helper()
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) == 0 {
		t.Fatal("no docs/*.md")
	}
	return append([]string{filepath.Join(root, "README.md")}, docs...)
}

// A block is one fenced code block of a markdown file.
type block struct {
	file string // as given to parse
	line int    // of the first code line
	lang string
	code string
}

var fence = regexp.MustCompile("^(\\s*)(```+|~~~+)\\s*([\\w+-]*)")

// parse returns the file's code blocks and its prose lines (the lines
// outside them, by number), where links are looked for.
func parse(t *testing.T, path string) (blocks []block, prose map[int]string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	prose = map[int]string{}
	var cur *block
	var marker string
	var body strings.Builder
	s := bufio.NewScanner(f)
	for n := 1; s.Scan(); n++ {
		line := s.Text()
		if m := fence.FindStringSubmatch(line); m != nil {
			if cur == nil {
				cur, marker = &block{file: path, line: n + 1, lang: m[3]}, m[2]
				body.Reset()
				continue
			}
			if strings.HasPrefix(strings.TrimSpace(line), marker) && strings.TrimSpace(line) == strings.Repeat(marker[:1], len(strings.TrimSpace(line))) {
				cur.code = body.String()
				blocks = append(blocks, *cur)
				cur = nil
				continue
			}
		}
		if cur != nil {
			body.WriteString(line)
			body.WriteByte('\n')
			continue
		}
		prose[n] = line
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if cur != nil {
		t.Errorf("%s:%d: code block never closed", path, cur.line-1)
	}
	return blocks, prose
}

var (
	link       = regexp.MustCompile(`\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)
	inlineCode = regexp.MustCompile("`[^`]*`")
	heading    = regexp.MustCompile(`^#{1,6}\s+(.*?)\s*#*\s*$`)
)

// anchors are the ids GitHub gives the headings of a markdown file.
func anchors(t *testing.T, path string) map[string]bool {
	_, prose := parse(t, path)
	lines := make([]int, 0, len(prose))
	for n := range prose {
		lines = append(lines, n)
	}
	slices.Sort(lines)
	ids := map[string]bool{}
	seen := map[string]int{}
	for _, n := range lines {
		m := heading.FindStringSubmatch(prose[n])
		if m == nil {
			continue
		}
		id := slug(m[1])
		if k := seen[id]; k > 0 {
			ids[id+"-"+strconv.Itoa(k)] = true
		} else {
			ids[id] = true
		}
		seen[id]++
	}
	return ids
}

// slug is GitHub's heading id: lower case, punctuation other than - and _
// dropped, spaces made dashes.
func slug(h string) string {
	h = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`).ReplaceAllString(h, "$1")
	var b strings.Builder
	for _, r := range strings.ToLower(h) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 127:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// TestRelativeLinks checks that every relative link of README.md and
// docs/*.md names a file or directory that exists, and, with a #fragment
// into a markdown file, one of its headings.
func TestRelativeLinks(t *testing.T) {
	checked := 0
	for _, path := range markdownFiles(t) {
		_, prose := parse(t, path)
		for n, line := range prose {
			line = inlineCode.ReplaceAllString(line, "")
			for _, m := range link.FindAllStringSubmatch(line, -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				file, frag, _ := strings.Cut(target, "#")
				dest := path
				if file != "" {
					dest = filepath.Join(filepath.Dir(path), file)
					if _, err := os.Stat(dest); err != nil {
						t.Errorf("%s:%d: link %q: %v", rel(path), n, target, err)
						continue
					}
				}
				checked++
				if frag == "" || !strings.HasSuffix(dest, ".md") {
					continue
				}
				if !anchors(t, dest)[frag] {
					t.Errorf("%s:%d: link %q: %s has no heading #%s", rel(path), n, target, rel(dest), frag)
				}
			}
		}
	}
	if checked == 0 {
		t.Error("no relative link found: is the link pattern wrong?")
	}
}

func rel(path string) string {
	if r, err := filepath.Rel(root, path); err == nil {
		return r
	}
	return path
}

const module = "github.com/protoc-gen-go-lb/protoc-gen-go-lb"

// prelude is what a snippet that is not a whole file is checked after:
// see the package doc.
const prelude = `package snippet

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"` + module + `/example/helloworld"
	pb "` + module + `/example/helloworld"
	"` + module + `/runtime/balancer/consistenthash"
	"` + module + `/runtime/discovery"
	"` + module + `/runtime/discovery/consul"
	"` + module + `/runtime/discovery/dns"
	"` + module + `/runtime/discovery/etcd"
	"` + module + `/runtime/discovery/static"
	"` + module + `/runtime/lb"
)

var (
	ctx        context.Context
	grpcServer *grpc.Server
	lis        net.Listener
	impl       pb.GreeterServer
	creds      credentials.TransportCredentials
	addr       string
	reader     sdkmetric.Reader
	caPEM      []byte
)
`

// wrap makes a Go block a file to check, and says whether its soft
// errors (unused variables and imports) count.
func wrap(code string) (src string, strict bool, offset int) {
	first := ""
	for _, l := range strings.Split(code, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "//") {
			first = l
			break
		}
	}
	switch {
	case strings.HasPrefix(first, "package "):
		return code, true, 0
	case strings.HasPrefix(first, "func "), strings.HasPrefix(first, "type "),
		strings.HasPrefix(first, "var "), strings.HasPrefix(first, "const "):
		return prelude + code, false, strings.Count(prelude, "\n")
	default:
		head := prelude + "func _() error {\n"
		return head + code + "return nil\n}\n", false, strings.Count(head, "\n")
	}
}

// TestGoSnippets type-checks every ```go block of README.md and
// docs/*.md against this module's packages (their export data, which
// `go list -export` builds or finds in the build cache: no network).
func TestGoSnippets(t *testing.T) {
	type unit struct {
		b      block
		src    string
		strict bool
		offset int
		file   *ast.File
	}
	fset := token.NewFileSet()
	var units []unit
	imports := map[string]bool{}
	for _, path := range markdownFiles(t) {
		blocks, _ := parse(t, path)
		for _, b := range blocks {
			if b.lang != "go" {
				continue
			}
			src, strict, offset := wrap(b.code)
			name := fmt.Sprintf("%s:%d", rel(b.file), b.line)
			f, err := parser.ParseFile(fset, name, src, parser.ParseComments)
			if err != nil {
				t.Errorf("%s: does not parse: %v", name, shift(err.Error(), name, b.line, offset))
				continue
			}
			for _, imp := range f.Imports {
				p, _ := strconv.Unquote(imp.Path.Value)
				imports[p] = true
			}
			units = append(units, unit{b, src, strict, offset, f})
		}
	}
	if len(units) == 0 {
		t.Fatal("no ```go block found")
	}
	exports := exportData(t, imports)
	imp := importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) {
		file, ok := exports[path]
		if !ok || file == "" {
			return nil, fmt.Errorf("no export data for %q (go list -export)", path)
		}
		return os.Open(file)
	})
	for _, u := range units {
		name := fmt.Sprintf("%s:%d", rel(u.b.file), u.b.line)
		var errs []string
		conf := types.Config{Importer: imp, Error: func(err error) {
			var te types.Error
			if errors.As(err, &te) && te.Soft && !u.strict {
				return
			}
			errs = append(errs, shift(err.Error(), name, u.b.line, u.offset))
		}}
		conf.Check("snippet", fset, []*ast.File{u.file}, nil)
		for _, e := range errs {
			t.Errorf("%s", e)
		}
	}
	t.Logf("%d Go blocks checked", len(units))
}

// shift rewrites "name:L:C: msg" of a wrapped snippet to the markdown
// file's line.
func shift(msg, name string, first, offset int) string {
	rest, ok := strings.CutPrefix(msg, name+":")
	if !ok {
		return msg
	}
	l, tail, _ := strings.Cut(rest, ":")
	n, err := strconv.Atoi(l)
	if err != nil {
		return msg
	}
	file, _, _ := strings.Cut(name, ":")
	if n <= offset {
		return fmt.Sprintf("%s (prelude line %d):%s", name, n, tail)
	}
	return fmt.Sprintf("%s:%d:%s", file, first+n-offset-1, tail)
}

// exportData maps each import path the snippets need, and their
// dependencies, to its export data file.
func exportData(t *testing.T, imports map[string]bool) map[string]string {
	t.Helper()
	args := []string{"list", "-export", "-deps", "-f", "{{.ImportPath}}\t{{.Export}}"}
	for p := range imports {
		args = append(args, p)
	}
	cmd := exec.Command("go", args...)
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=readonly", "GOPROXY=off")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -export: %v\n%s", err, stderr.String())
	}
	m := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		p, file, _ := strings.Cut(l, "\t")
		m[p] = file
	}
	return m
}

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/pluginpb"
)

// The committed generated files that both toolchains must reproduce.
var committed = []string{
	"proto/lb/options.pb.go",
	"example/helloworld/helloworld.pb.go",
	"example/helloworld/helloworld_grpc.pb.go",
	"example/helloworld/helloworld_lb.pb.go",
	"example/consulgreeter/consulgreeter.pb.go",
	"example/consulgreeter/consulgreeter_grpc.pb.go",
	"example/consulgreeter/consulgreeter_lb.pb.go",
}

const module = "github.com/protoc-gen-go-lb/protoc-gen-go-lb"

// tool finds a command from $env or PATH. Without it the test is skipped,
// unless LB_REQUIRE_TOOLS is set (as CI does), when it fails.
func tool(t *testing.T, env, name string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		return p
	}
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("LB_REQUIRE_TOOLS") != "" {
			t.Fatalf("%s not found (set %s or put it on PATH): %v", name, env, err)
		}
		t.Skipf("%s not found; make test installs it", name)
	}
	return p
}

// plugins is the directory buildPlugins builds into once; TestMain removes
// it.
var plugins struct {
	once sync.Once
	dir  string
	err  error
}

// buildPlugins builds protoc-gen-go and protoc-gen-go-grpc at the versions
// go.mod pins, and protoc-gen-go-lb from this tree, once per test binary.
func buildPlugins(t *testing.T) string {
	t.Helper()
	plugins.once.Do(func() {
		if plugins.dir, plugins.err = os.MkdirTemp("", "lb-plugins"); plugins.err != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", plugins.dir+string(filepath.Separator),
			"google.golang.org/protobuf/cmd/protoc-gen-go",
			"google.golang.org/grpc/cmd/protoc-gen-go-grpc",
			module+"/cmd/protoc-gen-go-lb")
		if out, err := cmd.CombinedOutput(); err != nil {
			plugins.err = fmt.Errorf("building plugins: %w\n%s", err, out)
		}
	})
	if plugins.err != nil {
		t.Fatal(plugins.err)
	}
	return plugins.dir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if plugins.dir != "" {
		os.RemoveAll(plugins.dir)
	}
	os.Exit(code)
}

// versionLine matches the header lines that name the compiler, which differ
// between protoc ("v3.21.12") and buf ("(unknown)").
var versionLine = regexp.MustCompile(`(?m)^//\s+(- )?protoc\s+.*$`)

func compareWithCommitted(t *testing.T, outDir string) {
	t.Helper()
	for _, f := range committed {
		want, err := os.ReadFile(filepath.Join("../..", f))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(outDir, f))
		if err != nil {
			t.Errorf("%s was not generated: %v", f, err)
			continue
		}
		norm := func(b []byte) string { return versionLine.ReplaceAllString(string(b), "// protoc VERSION") }
		if diff := cmp.Diff(norm(want), norm(got)); diff != "" {
			t.Errorf("%s differs from the committed file (-committed +generated):\n%s", f, diff)
		}
	}
}

func pathWith(dir string) string {
	return "PATH=" + dir + string(os.PathListSeparator) + os.Getenv("PATH")
}

// TestBufGenerate runs `buf generate` with the repository's buf.yaml and
// buf.gen.yaml into a temp dir and diffs the result with the committed
// files.
func TestBufGenerate(t *testing.T) {
	buf := tool(t, "BUF", "buf")
	plugins := buildPlugins(t)
	out := t.TempDir()
	cmd := exec.Command(buf, "generate", "-o", out)
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), pathWith(plugins))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("buf generate: %v\n%s", err, b)
	}
	compareWithCommitted(t, out)
}

// TestProtocGenerate runs protoc with --go_out, --go-grpc_out and
// --go-lb_out on the example and options protos and diffs the result with
// the committed files.
func TestProtocGenerate(t *testing.T) {
	protoc := tool(t, "PROTOC", "protoc")
	plugins := buildPlugins(t)
	out := t.TempDir()
	args := []string{"-I", "proto", "-I", "example"}
	for _, p := range []string{"go", "go-grpc", "go-lb"} {
		args = append(args, "--"+p+"_out="+out, "--"+p+"_opt=module="+module)
	}
	args = append(args, "lb/options.proto", "helloworld/helloworld.proto", "consulgreeter/consulgreeter.proto")
	cmd := exec.Command(protoc, args...)
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), pathWith(plugins))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("protoc %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	compareWithCommitted(t, out)
}

// TestProtocReportsErrors checks that a validation error reaches the user
// through protoc, naming the file, line, column and element, with no file
// written.
func TestProtocReportsErrors(t *testing.T) {
	protoc := tool(t, "PROTOC", "protoc")
	plugins := buildPlugins(t)
	out := t.TempDir()
	cmd := exec.Command(protoc, "-I", "testdata", "-I", "../../proto", "--go-lb_out="+out, "errors/hash_key.proto")
	cmd.Env = append(os.Environ(), pathWith(plugins))
	b, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("protoc accepted errors/hash_key.proto:\n%s", b)
	}
	if want := `errors/hash_key.proto:28:3: errors.hashkey.Ring.Missing: (lb.method).hash_key "user": "user" is not a field of errors.hashkey.Req`; !strings.Contains(string(b), want) {
		t.Errorf("protoc output lacks %q:\n%s", want, b)
	}
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Errorf("protoc wrote %d entries despite the error", len(entries))
	}
}

func TestVersionFlag(t *testing.T) {
	out, err := exec.Command(filepath.Join(buildPlugins(t), "protoc-gen-go-lb"), "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("--version: %v\n%s", err, out)
	}
	if got, want := string(out), "protoc-gen-go-lb v"+version+"\n"; got != want {
		t.Errorf("--version printed %q, want %q", got, want)
	}
}

// TestGoldenProtosCompile generates every testdata proto (the goldens'
// inputs, and the edition 2024 one that only buf compiles) with
// protoc-gen-go, protoc-gen-go-grpc and protoc-gen-go-lb through buf, into
// a module of its own that uses this tree, and runs go vet on it: every
// golden output compiles beside the code it is generated with.
func TestGoldenProtosCompile(t *testing.T) {
	buf := tool(t, "BUF", "buf")
	plugins := buildPlugins(t)
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	protos, err := filepath.Glob("testdata/*.proto")
	if err != nil || len(protos) == 0 {
		t.Fatalf("no testdata protos: %v", err)
	}
	// The kubernetes backend is a module of its own, with client-go's
	// requirements, which this tree's go.mod does not hold: the code
	// generated for it is compiled by example/kubernetes, a module that
	// requires it.
	protos = slices.DeleteFunc(protos, func(p string) bool { return filepath.Base(p) == "kubernetes.proto" })
	work := bufWorkspace(t, protos)
	out := filepath.Join(work, "out")
	var opts []string
	for _, p := range protos {
		name := filepath.Base(p)
		// Each file its own package, named after it.
		opts = append(opts, fmt.Sprintf(`"M%s=lbgolden/%spb"`, name, strings.TrimSuffix(name, ".proto")))
	}
	opt := "[" + strings.Join(append([]string{`"module=lbgolden"`}, opts...), ",") + "]"
	template := `{"version":"v2","plugins":[` +
		`{"local":"protoc-gen-go","out":"out","opt":` + opt + `},` +
		`{"local":"protoc-gen-go-grpc","out":"out","opt":` + opt + `},` +
		`{"local":"protoc-gen-go-lb","out":"out","opt":` + opt + `}]}`
	cmd := exec.Command(buf, "generate", "--template", template, "--exclude-path", "lb", "--exclude-path", "out")
	cmd.Dir = work
	cmd.Env = append(os.Environ(), pathWith(plugins))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("buf generate: %v\n%s", err, b)
	}
	// A module that builds the output against this tree, with this tree's
	// requirements (so nothing is downloaded).
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	var mod strings.Builder
	mod.WriteString("module lbgolden\n\n")
	inTool := false
	for _, line := range strings.Split(string(gomod), "\n") {
		switch {
		case strings.HasPrefix(line, "module "):
			continue
		case strings.HasPrefix(line, "tool ("):
			inTool = true
			continue
		case inTool:
			inTool = line != ")"
			continue
		case strings.HasPrefix(line, "tool "):
			continue
		}
		mod.WriteString(line + "\n")
	}
	mod.WriteString("\nrequire " + module + " v0.0.0\n\nreplace " + module + " => " + root + "\n")
	if err := os.WriteFile(filepath.Join(out, "go.mod"), []byte(mod.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	copyFile(t, filepath.Join(root, "go.sum"), filepath.Join(out, "go.sum"))
	vet := exec.Command("go", "vet", "./...")
	vet.Dir = out
	vet.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off", "GOWORK=off")
	if b, err := vet.CombinedOutput(); err != nil {
		t.Fatalf("go vet of the generated code: %v\n%s", err, b)
	}
	// Every golden's proto came out as code, the lb file included.
	for _, p := range protos {
		name := strings.TrimSuffix(filepath.Base(p), ".proto")
		if _, err := os.Stat(filepath.Join(out, name+"pb", name+".pb.go")); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}

// bufWorkspace makes a buf module in a temp dir: protos at its root,
// lb/options.proto beside them, and an empty out directory.
func bufWorkspace(t *testing.T, protos []string) string {
	t.Helper()
	work := t.TempDir()
	for _, d := range []string{filepath.Join(work, "lb"), filepath.Join(work, "out")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(t, "../../proto/lb/options.proto", filepath.Join(work, "lb/options.proto"))
	for _, p := range protos {
		copyFile(t, p, filepath.Join(work, filepath.Base(p)))
	}
	if err := os.WriteFile(filepath.Join(work, "buf.yaml"), []byte("version: v2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return work
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// bufRequest compiles file with buf (for what the in-process compiler does
// not know yet, such as edition 2024) and returns the CodeGeneratorRequest
// a plugin gets for it.
func bufRequest(t *testing.T, file string) *pluginpb.CodeGeneratorRequest {
	t.Helper()
	buf := tool(t, "BUF", "buf")
	work := bufWorkspace(t, []string{filepath.Join("testdata", file)})
	image := filepath.Join(work, "out", "image.binpb")
	cmd := exec.Command(buf, "build", "--path", file, "-o", image)
	cmd.Dir = work
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("buf build %s: %v\n%s", file, err, b)
	}
	b, err := os.ReadFile(image)
	if err != nil {
		t.Fatal(err)
	}
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(b, &set); err != nil {
		t.Fatal(err)
	}
	return &pluginpb.CodeGeneratorRequest{FileToGenerate: []string{file}, ProtoFile: set.File}
}

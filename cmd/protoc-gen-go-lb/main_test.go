package main

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/bufbuild/protocompile"
	"github.com/bufbuild/protocompile/linker"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/pluginpb"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// importPaths are where the test's protoc-free compiler finds imports.
var importPaths = []string{"testdata", "../../proto", "../../example"}

// request compiles file in process (no protoc) and returns the
// CodeGeneratorRequest protoc would send for it, round-tripped through its
// wire form as a real plugin receives it, so custom options are decoded by
// the registered lbpb extensions.
func request(t testing.TB, file, parameter string) *pluginpb.CodeGeneratorRequest {
	t.Helper()
	c := protocompile.Compiler{
		Resolver:       protocompile.WithStandardImports(&protocompile.SourceResolver{ImportPaths: importPaths}),
		SourceInfoMode: protocompile.SourceInfoStandard,
	}
	files, err := c.Compile(context.Background(), file)
	if err != nil {
		t.Fatalf("compiling %s: %v", file, err)
	}
	req := &pluginpb.CodeGeneratorRequest{FileToGenerate: []string{file}}
	if parameter != "" {
		req.Parameter = proto.String(parameter)
	}
	seen := map[string]bool{}
	var add func(fd protoreflect.FileDescriptor)
	add = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		for i := range fd.Imports().Len() {
			add(fd.Imports().Get(i).FileDescriptor)
		}
		var fdp *descriptorpb.FileDescriptorProto
		if r, ok := fd.(linker.Result); ok {
			fdp = r.FileDescriptorProto()
		} else {
			fdp = protodesc.ToFileDescriptorProto(fd)
		}
		req.ProtoFile = append(req.ProtoFile, fdp)
	}
	add(files[0])
	wire, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	out := &pluginpb.CodeGeneratorRequest{}
	if err := proto.Unmarshal(wire, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// run runs the plugin in process as protogen.Options.Run would.
func run(t testing.TB, req *pluginpb.CodeGeneratorRequest) *pluginpb.CodeGeneratorResponse {
	t.Helper()
	var flags flag.FlagSet
	gen, err := protogen.Options{ParamFunc: flags.Set}.New(req)
	if err != nil {
		return &pluginpb.CodeGeneratorResponse{Error: proto.String(err.Error())}
	}
	if err := generate(gen); err != nil {
		gen.Error(err)
	}
	return gen.Response()
}

// golden compares got with the golden file, or rewrites it with -update.
func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s is stale (-want +got), run go test -update:\n%s", path, diff)
	}
}

// TestGolden generates code for every testdata/*.proto and compares it with
// testdata/golden/<name>.golden: the generated files, or "no files" for a
// proto without annotated services.
func TestGolden(t *testing.T) {
	protos, err := filepath.Glob("testdata/*.proto")
	if err != nil || len(protos) == 0 {
		t.Fatalf("no testdata protos: %v", err)
	}
	for _, p := range protos {
		name := filepath.Base(p)
		t.Run(name, func(t *testing.T) {
			req := func() *pluginpb.CodeGeneratorRequest { return request(t, name, "") }
			if src, err := os.ReadFile(p); err == nil && strings.HasPrefix(string(src), `edition = "2024"`) {
				// The in-process compiler stops at edition 2023.
				req = func() *pluginpb.CodeGeneratorRequest { return bufRequest(t, name) }
			}
			resp := run(t, req())
			if resp.Error != nil {
				t.Fatalf("plugin error: %s", resp.GetError())
			}
			var b strings.Builder
			for _, f := range resp.File {
				b.WriteString("==> " + f.GetName() + " <==\n" + f.GetContent())
			}
			if len(resp.File) == 0 {
				b.WriteString("no files\n")
			}
			golden(t, filepath.Join("testdata", "golden", strings.TrimSuffix(name, ".proto")+".golden"), b.String())
		})
	}
}

// TestGoldenErrors runs the plugin on every testdata/errors/*.proto and
// compares the error it returns through the CodeGeneratorResponse, which
// must name every problem with its file, line, column and element, with
// the .err file.
func TestGoldenErrors(t *testing.T) {
	protos, err := filepath.Glob("testdata/errors/*.proto")
	if err != nil || len(protos) == 0 {
		t.Fatalf("no error protos: %v", err)
	}
	for _, p := range protos {
		name := "errors/" + filepath.Base(p)
		t.Run(filepath.Base(p), func(t *testing.T) {
			resp := run(t, request(t, name, ""))
			if resp.Error == nil {
				t.Fatalf("plugin accepted %s, want an error", name)
			}
			if len(resp.File) != 0 {
				t.Errorf("plugin wrote %d files along with an error", len(resp.File))
			}
			at := regexp.MustCompile(`^` + regexp.QuoteMeta(name) + `:[1-9][0-9]*:[1-9][0-9]*: `)
			for _, line := range strings.Split(resp.GetError(), "\n") {
				if !at.MatchString(line) {
					t.Errorf("error line %q does not start with %s:line:column", line, name)
				}
			}
			golden(t, strings.TrimSuffix(p, ".proto")+".err", resp.GetError()+"\n")
		})
	}
}

// TestExampleIsFresh regenerates the example in process and compares it
// with the committed example/helloworld/helloworld_lb.pb.go.
func TestExampleIsFresh(t *testing.T) {
	resp := run(t, request(t, "helloworld/helloworld.proto", "paths=source_relative"))
	if resp.Error != nil {
		t.Fatalf("plugin error: %s", resp.GetError())
	}
	if len(resp.File) != 1 {
		t.Fatalf("plugin wrote %d files, want 1", len(resp.File))
	}
	want, err := os.ReadFile(filepath.Join("../../example", resp.File[0].GetName()))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), resp.File[0].GetContent()); diff != "" {
		t.Errorf("committed example is stale (-want +got), run make generate:\n%s", diff)
	}
}

func TestUnknownParameter(t *testing.T) {
	resp := run(t, request(t, "helloworld/helloworld.proto", "no_such_option=true"))
	if !strings.Contains(resp.GetError(), "no_such_option") {
		t.Errorf("error = %q, want one naming the unknown parameter", resp.GetError())
	}
}

// protoc-gen-go-lb generates discovery-aware, load-balanced gRPC clients and
// self-registering servers for services annotated with (lb.service); see
// proto/lb/options.proto. Install it on your PATH and run it beside
// protoc-gen-go and protoc-gen-go-grpc:
//
//	protoc --go_out=. --go-grpc_out=. --go-lb_out=. path/to/file.proto
//
// For every file with an annotated service it writes path/to/file_lb.pb.go.
// Outside this repository, `protoc-gen-go-lb --include DIR` first writes the
// lb/options.proto compiled into the binary to DIR/lb/options.proto, so that
// `protoc -I DIR` (or a buf module rooted at DIR) resolves
// import "lb/options.proto"; see docs/getting-started.md.
// Options are checked before anything is written; every problem is reported
// with its file and element, through the CodeGeneratorResponse. The checks
// make the plugin's model of the file (model.go), and the templates of
// package templates, the file's shape, are executed over it.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/pluginpb"

	lbpb "github.com/protoc-gen-go-lb/protoc-gen-go-lb/proto/lb"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/lb"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/templates"
)

// version is the plugin's version: the version of the runtime it targets.
const version = lb.Version

func main() {
	if len(os.Args) == 2 && (os.Args[1] == "--version" || os.Args[1] == "-version") {
		fmt.Printf("protoc-gen-go-lb v%s\n", version)
		return
	}
	if len(os.Args) == 3 && (os.Args[1] == "--include" || os.Args[1] == "-include") {
		path, err := writeOptionsProto(os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, "protoc-gen-go-lb:", err)
			os.Exit(1)
		}
		fmt.Println(path)
		return
	}
	if len(os.Args) > 1 {
		fmt.Fprintln(os.Stderr, "protoc-gen-go-lb: this is a protoc plugin: run it through protoc or buf, or with --version or --include DIR")
		os.Exit(2)
	}
	// The plugin has no parameters of its own (protogen handles paths,
	// module and M); an empty flag set rejects any other with an error.
	var flags flag.FlagSet
	protogen.Options{ParamFunc: flags.Set}.Run(generate)
}

// writeOptionsProto writes the embedded lb/options.proto under dir, making
// the directories it needs, and returns the file's path.
func writeOptionsProto(dir string) (string, error) {
	path := filepath.Join(dir, "lb", "options.proto")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(path, lbpb.OptionsProto, 0o644); err != nil {
		return "", err
	}
	return path, nil
}

// supportedFeatures are the CodeGeneratorResponse features the plugin
// supports.
const supportedFeatures = uint64(pluginpb.CodeGeneratorResponse_FEATURE_PROTO3_OPTIONAL | pluginpb.CodeGeneratorResponse_FEATURE_SUPPORTS_EDITIONS)

// generate checks the options of every file to generate and, if all are
// valid, writes a _lb.pb.go for each file with an annotated service.
func generate(gen *protogen.Plugin) error {
	gen.SupportedFeatures = supportedFeatures
	gen.SupportedEditionsMinimum = descriptorpb.Edition_EDITION_PROTO2
	gen.SupportedEditionsMaximum = descriptorpb.Edition_EDITION_2024
	var files []*fileModel
	var errs errorList
	protoc := protocVersion(gen.Request)
	for _, f := range gen.Files {
		if !f.Generate {
			continue
		}
		if m := readFile(f, protoc, &errs); m != nil {
			files = append(files, m)
		}
	}
	checkIdents(gen, files, &errs)
	if err := errs.err(); err != nil {
		return err
	}
	t, err := templates.Parse()
	if err != nil {
		return err
	}
	for _, m := range files {
		if err := generateFile(gen, t, m); err != nil {
			return err
		}
	}
	return nil
}

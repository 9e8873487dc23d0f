package main

import (
	"regexp"
	"strings"
	"testing"

	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/templates"
)

// TestTemplateErrorNamesTheService: a template that fails on a model is an
// error naming the file and the service, not a panic.
func TestTemplateErrorNamesTheService(t *testing.T) {
	tmpl, err := templates.Parse()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		spoil func(*serviceModel)
	}{
		{"a value the templates cannot write", func(s *serviceModel) {
			s.Balancer.Fields = append(s.Balancer.Fields, field{Name: "Odd", Value: struct{}{}})
		}},
		{"a nil policy", func(s *serviceModel) { s.Balancer = nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gen, err := protogen.Options{}.New(request(t, "static.proto", ""))
			if err != nil {
				t.Fatal(err)
			}
			var errs errorList
			m := readFile(gen.FilesByPath["static.proto"], "(unknown)", &errs)
			if err := errs.err(); err != nil || m == nil {
				t.Fatalf("readFile(static.proto) = %v, %v", m, err)
			}
			tc.spoil(m.Services[0])
			err = generateFile(gen, tmpl, m)
			if want := regexp.MustCompile(`^static\.proto:[0-9]+:[0-9]+: test\.static\.Inventory: template: `); err == nil || !want.MatchString(err.Error()) {
				t.Errorf("generateFile = %v, want an error matching %s", err, want)
			}
		})
	}
}

// TestAnnotateCode: with annotate_code, the .meta file annotates each
// identifier the plugin declares with the service's place in the proto,
// as protoc-gen-go-grpc does.
func TestAnnotateCode(t *testing.T) {
	resp := run(t, request(t, "static.proto", "annotate_code"))
	if resp.Error != nil {
		t.Fatalf("plugin error: %s", resp.GetError())
	}
	var code, meta string
	for _, f := range resp.GetFile() {
		switch {
		case strings.HasSuffix(f.GetName(), "_lb.pb.go"):
			code = f.GetContent()
		case strings.HasSuffix(f.GetName(), "_lb.pb.go.meta"):
			meta = f.GetContent()
		}
	}
	var info descriptorpb.GeneratedCodeInfo
	if err := prototext.Unmarshal([]byte(meta), &info); err != nil {
		t.Fatalf("the .meta file: %v\n%s", err, meta)
	}
	got := map[string]bool{}
	for _, a := range info.GetAnnotation() {
		got[code[a.GetBegin():a.GetEnd()]] = a.GetSourceFile() == "static.proto" && len(a.GetPath()) == 2
	}
	n := newNames(&protogen.Service{GoName: "Inventory"})
	for _, id := range n.declared() {
		if !got[id] {
			t.Errorf("%s is not annotated with its service (annotations: %v)", id, got)
		}
	}
}

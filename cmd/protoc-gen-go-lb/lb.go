package main

import (
	"fmt"

	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/types/pluginpb"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/templates"
)

// generateFile writes the _lb.pb.go file of m: the templates' header, then
// each service, executed into the GeneratedFile, which qualifies the
// identifiers they name and manages the imports. A template that fails is
// an error naming the file, and the service with its line and column.
func generateFile(gen *protogen.Plugin, t *templates.Templates, m *fileModel) error {
	g := gen.NewGeneratedFile(m.file.GeneratedFilenamePrefix+"_lb.pb.go", m.file.GoImportPath)
	if err := t.Execute(g, "header", m); err != nil {
		return fmt.Errorf("%s: %w", m.Source, err)
	}
	for _, s := range m.Services {
		if err := t.Execute(g, "service", s); err != nil {
			return fmt.Errorf("%s: %w", where(s.service.Desc), err)
		}
		for _, id := range s.Names.declared() {
			g.AnnotateSymbol(id, protogen.Annotation{Location: s.service.Location})
		}
	}
	return nil
}

// protocVersion is the compiler's version, as protoc-gen-go-grpc writes
// it.
func protocVersion(req *pluginpb.CodeGeneratorRequest) string {
	v := req.GetCompilerVersion()
	if v == nil {
		return "(unknown)"
	}
	s := fmt.Sprintf("v%d.%d.%d", v.GetMajor(), v.GetMinor(), v.GetPatch())
	if v.GetSuffix() != "" {
		s += "-" + v.GetSuffix()
	}
	return s
}

// Package templates holds the text/template that protoc-gen-go-lb executes
// into each generated file. The template holds no logic: it ranges over a
// view model whose fields the plugin has already computed and checked, and
// qualifies every imported identifier through its one helper, ident, bound
// to protogen's GeneratedFile.QualifiedGoIdent.
package templates

import (
	_ "embed"
	"text/template"

	"google.golang.org/protobuf/compiler/protogen"
)

//go:embed lb.go.tmpl
var lbFile string

// LB returns the template of a _lb.pb.go file, with ident qualifying
// identifiers for the file being generated.
func LB(ident func(protogen.GoIdent) string) *template.Template {
	return template.Must(template.New("lb.go.tmpl").Funcs(template.FuncMap{"ident": ident}).Parse(lbFile))
}

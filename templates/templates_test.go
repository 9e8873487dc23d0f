package templates

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/types/pluginpb"
)

func TestParse(t *testing.T) {
	tmpl, err := Parse()
	if err != nil {
		t.Fatalf("Parse() = %v", err)
	}
	for _, name := range []string{"header", "service", "policy", "discovery", "client", "server", "deprecated"} {
		if tmpl.t.Lookup(name) == nil {
			t.Errorf("Parse() defines no template %q", name)
		}
	}
}

func TestValue(t *testing.T) {
	ident := func(id protogen.GoIdent) string { return "<" + string(id.GoImportPath) + ">." + id.GoName }
	for _, tc := range []struct {
		v    any
		want string
	}{
		{"a \"b\"", `"a \"b\""`},
		{[]string{"a", "b"}, `[]string{"a", "b"}`},
		{true, "true"},
		{uint32(443), "443"},
		{uint64(65537), "65537"},
		{1.25, "1.25"},
		{2.0, "2"},
		{time.Second, "<time>.Second"},
		{20 * time.Millisecond, "20 * <time>.Millisecond"},
		{90 * time.Minute, "90 * <time>.Minute"},
		{1500 * time.Microsecond, "1500 * <time>.Microsecond"},
		{time.Duration(7), "7 * <time>.Nanosecond"},
		{time.Duration(0), "0"},
		{protogen.GoImportPath("example.com/x").Ident("Y"), "<example.com/x>.Y"},
	} {
		if got, err := value(ident, tc.v); err != nil || got != tc.want {
			t.Errorf("value(%#v) = %q, %v; want %q", tc.v, got, err, tc.want)
		}
	}
	for _, v := range []any{struct{}{}, 1.0 / zero(), float32(1)} {
		if got, err := value(ident, v); err == nil {
			t.Errorf("value(%#v) = %q, want an error", v, got)
		}
	}
}

func zero() float64 { return 0 }

// TestExecute: ident qualifies through the GeneratedFile, which imports
// the package; data the templates cannot read is an error, not a panic.
func TestExecute(t *testing.T) {
	tmpl, err := Parse()
	if err != nil {
		t.Fatal(err)
	}
	gen, err := protogen.Options{}.New(&pluginpb.CodeGeneratorRequest{})
	if err != nil {
		t.Fatal(err)
	}
	g := gen.NewGeneratedFile("x_lb.pb.go", "example.com/x")
	var header struct {
		Version, ProtocVersion, Source string
		Package                        protogen.GoPackageName
		LB                             struct{ SupportPackage protogen.GoIdent }
	}
	header.Version, header.ProtocVersion, header.Source, header.Package = "1.2.3", "(unknown)", "x.proto", "x"
	header.LB.SupportPackage = protogen.GoImportPath("example.com/lb").Ident("SupportPackageIsVersion1")
	if err := tmpl.Execute(g, "header", header); err != nil {
		t.Fatalf(`Execute("header") = %v`, err)
	}
	content, err := g.Content()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"// - protoc-gen-go-lb v1.2.3\n", "package x\n", `lb "example.com/lb"`, "const _ = lb.SupportPackageIsVersion1\n"} {
		if !strings.Contains(string(content), want) {
			t.Errorf("the header lacks %q:\n%s", want, content)
		}
	}
	if err := tmpl.Execute(gen.NewGeneratedFile("y_lb.pb.go", "example.com/y"), "service", struct{}{}); err == nil {
		t.Errorf(`Execute("service", struct{}{}) = nil, want an error`)
	}
}

package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"reflect"
	"testing"

	lbpb "github.com/protoc-gen-go-lb/protoc-gen-go-lb/proto/lb"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/consul"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/dns"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/etcd"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/static"
)

// TestEveryBackendHasOneRow: each field of (lb.service).discovery's
// oneof has one row of the backend table, in the package whose Config
// its settings struct writes, and each field of that struct is a field
// of the Config, of the same type.
func TestEveryBackendHasOneRow(t *testing.T) {
	configs := map[string]reflect.Type{
		"static": reflect.TypeFor[static.Config](),
		"dns":    reflect.TypeFor[dns.Config](),
		"etcd":   reflect.TypeFor[etcd.Config](),
		"consul": reflect.TypeFor[consul.Config](),
	}
	msg := (&lbpb.Discovery{}).ProtoReflect()
	fields := msg.Descriptor().Oneofs().ByName("backend").Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		var row *backend
		for _, b := range backends {
			if b.field == string(fd.Name()) {
				if row != nil {
					t.Errorf("discovery.%s has two rows", fd.Name())
				}
				row = b
			}
		}
		if row == nil {
			t.Errorf("discovery.%s has no row in the backend table", fd.Name())
			continue
		}
		empty := msg.NewField(fd).Message().Interface()
		settings := reflect.TypeOf(row.read(empty, func(string, ...any) {})).Elem()
		if row.field == "kubernetes" {
			// Its own module: read its Config from the source, which
			// the plugin's module does not import (client-go).
			fields := sourceConfig(t, "../../runtime/discovery/kubernetes/kubernetes.go")
			for j := range settings.NumField() {
				f := settings.Field(j)
				if fields[f.Name] != f.Type.String() {
					t.Errorf("discovery.kubernetes: settings field %s %s is not a field of kubernetes.Config of that type (%q)", f.Name, f.Type, fields[f.Name])
				}
			}
			continue
		}
		config, ok := configs[row.field]
		if !ok {
			t.Errorf("discovery.%s: the test does not know its Config; add it", fd.Name())
			continue
		}
		if got := config.PkgPath(); got != string(row.pkg) {
			t.Errorf("discovery.%s: row's package %s, its Config's %s", fd.Name(), row.pkg, got)
		}
		for j := range settings.NumField() {
			f := settings.Field(j)
			cf, ok := config.FieldByName(f.Name)
			if !ok || cf.Type != f.Type {
				t.Errorf("discovery.%s: settings field %s %s is not a field of %s of that type", fd.Name(), f.Name, f.Type, config)
			}
		}
	}
}

// sourceConfig returns the fields of the type Config declared in the Go
// file at path, each with its type as written.
func sourceConfig(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string]string{}
	ast.Inspect(f, func(n ast.Node) bool {
		ts, ok := n.(*ast.TypeSpec)
		if !ok || ts.Name.Name != "Config" {
			return true
		}
		for _, fl := range ts.Type.(*ast.StructType).Fields.List {
			for _, name := range fl.Names {
				fields[name.Name] = types(fl.Type)
			}
		}
		return false
	})
	if len(fields) == 0 {
		t.Fatalf("%s declares no Config", path)
	}
	return fields
}

// types writes a field's type as reflect names it, for the types a
// settings struct holds.
func types(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name
	case *ast.ArrayType:
		return "[]" + types(e.Elt)
	case *ast.SelectorExpr:
		return types(e.X) + "." + e.Sel.Name
	}
	return "?"
}

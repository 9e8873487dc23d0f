package main

import (
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
		config, ok := configs[row.field]
		if !ok {
			t.Errorf("discovery.%s: the test does not know its Config; add it", fd.Name())
			continue
		}
		if got := config.PkgPath(); got != string(row.pkg) {
			t.Errorf("discovery.%s: row's package %s, its Config's %s", fd.Name(), row.pkg, got)
		}
		empty := msg.NewField(fd).Message().Interface()
		settings := reflect.TypeOf(row.read(empty, func(string, ...any) {})).Elem()
		for j := range settings.NumField() {
			f := settings.Field(j)
			cf, ok := config.FieldByName(f.Name)
			if !ok || cf.Type != f.Type {
				t.Errorf("discovery.%s: settings field %s %s is not a field of %s of that type", fd.Name(), f.Name, f.Type, config)
			}
		}
	}
}

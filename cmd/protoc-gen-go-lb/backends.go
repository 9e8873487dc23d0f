package main

import (
	"reflect"
	"strings"

	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/proto"

	lbpb "github.com/protoc-gen-go-lb/protoc-gen-go-lb/proto/lb"
)

// backend is a discovery backend the plugin knows: one row of backends.
type backend struct {
	field string                // its field in (lb.service).discovery's oneof
	pkg   protogen.GoImportPath // its package, whose Config the literal is
	slash bool                  // its service names may hold '/' (etcd keys)
	// read checks its options into its settings struct (see model.go).
	read func(opts proto.Message, bad badFunc) any
}

// backends are the discovery backends, one row each. Adding a backend on
// the plugin side is: its options message in the
// Discovery oneof of proto/lb/options.proto; a settings struct in
// model.go whose fields are named and typed as its Config's; and a row
// here, whose read checks the options into that struct. The template
// writes any backend's Config literal from the settings that are set.
var backends = []*backend{
	{field: "static", pkg: staticPackage, read: func(m proto.Message, bad badFunc) any { return readStatic(m.(*lbpb.Static), bad) }},
	{field: "dns", pkg: dnsPackage, read: func(m proto.Message, bad badFunc) any { return readDNS(m.(*lbpb.DNS), bad) }},
	{field: "etcd", pkg: etcdPackage, slash: true, read: func(m proto.Message, bad badFunc) any { return readEtcd(m.(*lbpb.Etcd), bad) }},
	{field: "consul", pkg: consulPackage, read: func(m proto.Message, bad badFunc) any { return readConsul(m.(*lbpb.Consul), bad) }},
	{field: "kubernetes", pkg: kubernetesPackage, read: func(m proto.Message, bad badFunc) any { return readKubernetes(m.(*lbpb.Kubernetes), bad) }},
}

// readDiscovery reads (lb.service).discovery: the backend that is set,
// through its row.
func readDiscovery(d *lbpb.Discovery, bad badFunc) discoveryModel {
	msg := d.ProtoReflect()
	fd := msg.WhichOneof(msg.Descriptor().Oneofs().ByName("backend"))
	if fd == nil {
		names := make([]string, len(backends))
		for i, b := range backends {
			names[i] = b.field
		}
		bad("(lb.service).discovery is required: set one of %s", strings.Join(names, ", "))
		return discoveryModel{}
	}
	for _, b := range backends {
		if string(fd.Name()) == b.field {
			settings := b.read(msg.Get(fd).Message().Interface(), bad)
			return discoveryModel{Type: b.pkg.Ident("Config"), Fields: setFields(settings), backend: b, settings: settings}
		}
	}
	bad("(lb.service).discovery.%s: this protoc-gen-go-lb has no such backend", fd.Name())
	return discoveryModel{}
}

// setFields returns the fields of the struct settings points to that are
// not zero, in order.
func setFields(settings any) []field {
	v := reflect.ValueOf(settings).Elem()
	var fs []field
	for i := range v.NumField() {
		if f := v.Field(i); !f.IsZero() {
			fs = append(fs, field{Name: v.Type().Field(i).Name, Value: f.Interface()})
		}
	}
	return fs
}

package main

import (
	"fmt"

	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// This file names what the plugin declares so that the output compiles:
// the package-level identifiers of each service, checked against every
// identifier protoc-gen-go, protoc-gen-go-grpc and this plugin declare in
// the same Go package, and the lifecycle methods of the balanced client,
// which move aside for RPCs of the same name.

// declared maps each identifier declared in a Go package to what declares
// it ("message test.Foo", "protoc-gen-go-grpc for service test.Bar", ...).
type declared map[string]string

// packageIdents returns the identifiers that protoc-gen-go and
// protoc-gen-go-grpc declare in the Go package of f, for every file of the
// request in that package.
func packageIdents(gen *protogen.Plugin, f *protogen.File) declared {
	d := declared{}
	for _, other := range gen.Files {
		if other.GoImportPath != f.GoImportPath {
			continue
		}
		d[other.GoDescriptorIdent.GoName] = "protoc-gen-go for file " + other.Desc.Path()
		var messages func([]*protogen.Message)
		enums := func(es []*protogen.Enum) {
			for _, e := range es {
				d[e.GoIdent.GoName] = "enum " + string(e.Desc.FullName())
				d[e.GoIdent.GoName+"_name"] = "enum " + string(e.Desc.FullName())
				d[e.GoIdent.GoName+"_value"] = "enum " + string(e.Desc.FullName())
				for _, v := range e.Values {
					d[v.GoIdent.GoName] = "enum value " + string(v.Desc.FullName())
				}
			}
		}
		messages = func(ms []*protogen.Message) {
			for _, m := range ms {
				if m.Desc.IsMapEntry() {
					continue
				}
				d[m.GoIdent.GoName] = "message " + string(m.Desc.FullName())
				for _, o := range m.Oneofs {
					for _, fld := range o.Fields {
						d[fld.GoIdent.GoName] = "oneof field " + string(fld.Desc.FullName())
					}
				}
				for _, x := range m.Extensions {
					d[x.GoIdent.GoName] = "extension " + string(x.Desc.FullName())
				}
				enums(m.Enums)
				messages(m.Messages)
			}
		}
		enums(other.Enums)
		messages(other.Messages)
		for _, x := range other.Extensions {
			d[x.GoIdent.GoName] = "extension " + string(x.Desc.FullName())
		}
		for _, s := range other.Services {
			by := "protoc-gen-go-grpc for service " + string(s.Desc.FullName())
			n := s.GoName
			for _, id := range []string{n + "Client", "New" + n + "Client", n + "Server", "Unimplemented" + n + "Server", "Unsafe" + n + "Server", "Register" + n + "Server", n + "_ServiceDesc", n + "_ServiceName"} {
				d[id] = by
			}
			for _, m := range s.Methods {
				d[n+"_"+m.GoName+"_FullMethodName"] = by
				if m.Desc.IsStreamingClient() || m.Desc.IsStreamingServer() {
					d[n+"_"+m.GoName+"Client"] = by
					d[n+"_"+m.GoName+"Server"] = by
				}
			}
		}
	}
	return d
}

// serviceIdents are the package-level identifiers this plugin declares for
// service s.
func serviceIdents(s *protogen.Service) []string {
	n := s.GoName
	return []string{n + "ServiceName", "_" + n + "_lbService", n + "BalancedClient", "New" + n + "BalancedClient", "Register" + n + "BalancedServer", n + "ServerOptions"}
}

// checkIdents reports each identifier this plugin would declare for the
// services of m that something else in the Go package already declares,
// naming both.
func checkIdents(gen *protogen.Plugin, models []*fileModel, errs *errorList) {
	byPackage := map[protogen.GoImportPath]declared{}
	for _, m := range models {
		d := byPackage[m.file.GoImportPath]
		if d == nil {
			d = packageIdents(gen, m.file)
			byPackage[m.file.GoImportPath] = d
		}
		for _, s := range m.services {
			for _, meth := range s.service.Methods {
				if meth.GoName == s.service.GoName+"Client" {
					errs.add(m.file, meth.Desc.FullName(), "the RPC is named like the %s field the balanced client embeds, which would hide it: rename the RPC", meth.GoName)
				}
			}
			for _, id := range serviceIdents(s.service) {
				if by, ok := d[id]; ok {
					errs.add(m.file, s.service.Desc.FullName(), "the generated identifier %s is already declared in Go package %s by %s: rename one of them", id, m.file.GoImportPath, by)
					continue
				}
				d[id] = "protoc-gen-go-lb for service " + string(s.service.Desc.FullName())
			}
		}
	}
}

// lifecycle are the names of the balanced client's own methods: Close and
// Conn, or, when the service has an RPC of that name (which the embedded
// <Svc>Client promotes, and which must stay), the name with "LB" in front,
// then with "_" after it until it is free.
type lifecycle struct{ Close, Conn string }

func lifecycleNames(s *protogen.Service) lifecycle {
	taken := map[string]bool{}
	for _, m := range s.Methods {
		taken[m.GoName] = true
	}
	free := func(name string) string {
		if !taken[name] {
			return name
		}
		name = "LB" + name
		for taken[name] {
			name += "_"
		}
		return name
	}
	l := lifecycle{Close: free("Close")}
	taken[l.Close] = true
	l.Conn = free("Conn")
	return l
}

// renamed says, in the generated doc comment, why a lifecycle method is
// not called name.
func renamed(name, got string, s protoreflect.ServiceDescriptor) string {
	if name == got {
		return ""
	}
	return fmt.Sprintf(" (not %s: %s has an RPC of that name)", name, s.FullName())
}

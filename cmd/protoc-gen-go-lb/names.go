package main

import (
	"strings"
	"unicode"

	"google.golang.org/protobuf/compiler/protogen"
)

// This file names what the plugin declares so that the output compiles:
// the identifiers of each service, computed once, those at package level
// checked against every identifier protoc-gen-go, protoc-gen-go-grpc and
// this plugin declare in the same Go package, and the own methods of the
// balanced client, which move aside for RPCs of the same name.

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

// names are the Go identifiers of one service's generated code, computed
// once (as connect-go's plugin does): the templates write them, and
// checkIdents checks those the plugin declares against the package.
type names struct {
	// Declared by this plugin.
	ServiceName   string // <Svc>ServiceName, the registry name
	Policy        string // _<Svc>_lbService, the lb.Service value
	Client        string // <Svc>BalancedClient
	NewClient     string // New<Svc>BalancedClient
	ServerOptions string // <Svc>ServerOptions
	Register      string // Register<Svc>BalancedServer
	// The balanced client's own methods.
	Close, Conn, HedgeStats clientMethod
	// Declared by protoc-gen-go-grpc, named by the generated code.
	GRPCClient    string // <Svc>Client, which the balanced client embeds
	GRPCClientA   string // "a" or "an", the article the comments put before GRPCClient
	NewGRPCClient string // New<Svc>Client
	GRPCServer    string // <Svc>Server
	ServiceDesc   string // <Svc>_ServiceDesc
}

// clientMethod is a method of the balanced client, and whether it moved
// aside for an RPC of its usual name.
type clientMethod struct {
	Name  string
	Moved bool
}

func newNames(s *protogen.Service) names {
	n := s.GoName
	// Close, Conn and HedgeStats, or, when the service has an RPC of that
	// name (which the embedded <Svc>Client promotes, and which must
	// stay), the name with "LB" in front, then with "_" after it until it
	// is free.
	taken := map[string]bool{}
	for _, m := range s.Methods {
		taken[m.GoName] = true
	}
	free := func(name string) clientMethod {
		if !taken[name] {
			taken[name] = true
			return clientMethod{Name: name}
		}
		moved := "LB" + name
		for taken[moved] {
			moved += "_"
		}
		taken[moved] = true
		return clientMethod{Name: moved, Moved: true}
	}
	return names{
		ServiceName:   n + "ServiceName",
		Policy:        "_" + n + "_lbService",
		Client:        n + "BalancedClient",
		NewClient:     "New" + n + "BalancedClient",
		ServerOptions: n + "ServerOptions",
		Register:      "Register" + n + "BalancedServer",
		Close:         free("Close"),
		Conn:          free("Conn"),
		HedgeStats:    free("HedgeStats"),
		GRPCClient:    n + "Client",
		GRPCClientA:   article(n + "Client"),
		NewGRPCClient: "New" + n + "Client",
		GRPCServer:    n + "Server",
		ServiceDesc:   n + "_ServiceDesc",
	}
}

// declared returns the package-level identifiers the plugin declares.
func (n names) declared() []string {
	return []string{n.ServiceName, n.Policy, n.Client, n.NewClient, n.Register, n.ServerOptions}
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
		for _, s := range m.Services {
			for _, meth := range s.service.Methods {
				if meth.GoName == s.Names.GRPCClient {
					errs.add(meth.Desc, "the RPC is named like the %s field the balanced client embeds, which would hide it: rename the RPC", meth.GoName)
				}
			}
			for _, id := range s.Names.declared() {
				if by, ok := d[id]; ok {
					errs.add(s.service.Desc, "the generated identifier %s is already declared in Go package %s by %s: rename one of them", id, m.file.GoImportPath, by)
					continue
				}
				d[id] = "protoc-gen-go-lb for service " + s.FullName
			}
		}
	}
}

// article returns "an" for an identifier that is read starting with a
// vowel sound (InventoryClient, HTTPClient, UpdateClient), else "a"
// (GreeterClient, UserClient, URLClient). An initialism, two capitals at
// the start, is read letter by letter; a word by its spelling, with the
// usual exceptions (one, hour, a "you" sound in u-consonant-vowel).
func article(id string) string {
	r := []rune(id)
	if len(r) == 0 {
		return "a"
	}
	if len(r) == 1 || unicode.IsUpper(r[1]) {
		if strings.ContainsRune("AEFHILMNORSX", unicode.ToUpper(r[0])) {
			return "an"
		}
		return "a"
	}
	// The first word of the camel-case identifier, in lower case.
	end := 1
	for end < len(r) && !unicode.IsUpper(r[end]) {
		end++
	}
	w := strings.ToLower(string(r[:end]))
	vowel := func(i int) bool { return i < len(w) && strings.ContainsRune("aeiou", rune(w[i])) }
	switch {
	case w == "one" || w == "once" || strings.HasPrefix(w, "eu"):
		return "a"
	case strings.HasPrefix(w, "hour") || strings.HasPrefix(w, "honest") || strings.HasPrefix(w, "honor") || strings.HasPrefix(w, "heir"):
		return "an"
	case w[0] == 'u':
		// Unit, user, usage: "you"; under, update, unordered: "un".
		if strings.HasPrefix(w, "un") {
			if strings.HasPrefix(w, "uni") || strings.HasPrefix(w, "unary") {
				return "a"
			}
			return "an"
		}
		if len(w) > 2 && !vowel(1) && vowel(2) {
			return "a"
		}
		return "an"
	case vowel(0):
		return "an"
	}
	return "a"
}

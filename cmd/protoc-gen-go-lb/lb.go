package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/types/descriptorpb"

	lbpb "github.com/protoc-gen-go-lb/protoc-gen-go-lb/proto/lb"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/templates"
)

// Import paths of the generated code.
const (
	contextPackage = protogen.GoImportPath("context")
	timePackage    = protogen.GoImportPath("time")
	grpcPackage    = protogen.GoImportPath("google.golang.org/grpc")
	codesPackage   = protogen.GoImportPath("google.golang.org/grpc/codes")
	lbPackage      = protogen.GoImportPath("github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/lb")
	staticPackage  = protogen.GoImportPath("github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/static")
	dnsPackage     = protogen.GoImportPath("github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/dns")
	etcdPackage    = protogen.GoImportPath("github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/etcd")
	consulPackage  = protogen.GoImportPath("github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/consul")
	discPackage    = protogen.GoImportPath("github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery")
	// balancerPackages is the parent of the policy packages.
	balancerPackages = "github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/"
)

// fileView is what the template of a _lb.pb.go file ranges over.
type fileView struct {
	PluginVersion string
	ProtocVersion string
	Source        string
	Package       string
	Idents        idents
	Services      []serviceView
}

// idents are the imported identifiers the template names.
type idents struct {
	SupportPackage, Service, Method, Conn, Dial, DialOption protogen.GoIdent
	WithTransportCredentials, WithInsecure                  protogen.GoIdent
	Register, RegisterOption, Registration                  protogen.GoIdent
	Context, ClientConn, Server                             protogen.GoIdent
}

type serviceView struct {
	GoName          string
	FullName        string
	FullNameLiteral string
	RegistryName    string // a Go string literal
	VarName         string
	Comments        string // the service's leading comments, as // lines
	Discovery       string // a Go expression
	Failure         string // a Go expression, or "" for the backend's default
	Balancer        string // a Go expression
	PoolSize        uint32
	Methods         []string // the fields of each lb.Method literal
	ServiceDesc     string
	Deprecated      bool   // the service is deprecated
	Close, Conn     string // the names of the client's lifecycle methods
	CloseNote       string // why Close is not called Close, or ""
	ConnNote        string // why Conn is not called Conn, or ""
}

func generateFile(gen *protogen.Plugin, m *fileModel) error {
	f := m.file
	g := gen.NewGeneratedFile(f.GeneratedFilenamePrefix+"_lb.pb.go", f.GoImportPath)
	ident := g.QualifiedGoIdent
	v := fileView{
		PluginVersion: version,
		ProtocVersion: protocVersion(gen),
		Source:        f.Desc.Path(),
		Package:       string(f.GoPackageName),
		Idents: idents{
			SupportPackage:           lbPackage.Ident("SupportPackageIsVersion1"),
			Service:                  lbPackage.Ident("Service"),
			Method:                   lbPackage.Ident("Method"),
			Conn:                     lbPackage.Ident("Conn"),
			Dial:                     lbPackage.Ident("Dial"),
			DialOption:               lbPackage.Ident("DialOption"),
			WithTransportCredentials: lbPackage.Ident("WithTransportCredentials"),
			WithInsecure:             lbPackage.Ident("WithInsecure"),
			Register:                 lbPackage.Ident("Register"),
			RegisterOption:           lbPackage.Ident("RegisterOption"),
			Registration:             lbPackage.Ident("Registration"),
			Context:                  contextPackage.Ident("Context"),
			ClientConn:               grpcPackage.Ident("ClientConn"),
			Server:                   grpcPackage.Ident("Server"),
		},
	}
	for _, s := range m.services {
		v.Services = append(v.Services, newServiceView(s, ident))
	}
	if err := templates.LB(ident).Execute(g, v); err != nil {
		return fmt.Errorf("%s: executing template: %w", f.Desc.Path(), err)
	}
	return nil
}

func protocVersion(gen *protogen.Plugin) string {
	v := gen.Request.GetCompilerVersion()
	if v == nil {
		return "(unknown)"
	}
	s := fmt.Sprintf("v%d.%d.%d", v.GetMajor(), v.GetMinor(), v.GetPatch())
	if v.GetSuffix() != "" {
		s += "-" + v.GetSuffix()
	}
	return s
}

func newServiceView(s *serviceModel, ident func(protogen.GoIdent) string) serviceView {
	name := s.service.GoName
	v := serviceView{
		GoName:          name,
		FullName:        string(s.service.Desc.FullName()),
		FullNameLiteral: strconv.Quote(string(s.service.Desc.FullName())),
		RegistryName:    strconv.Quote(s.registryName),
		VarName:         "_" + name + "_lbService",
		Comments:        strings.TrimSuffix(s.service.Comments.Leading.String(), "\n"),
		Discovery:       discoveryExpr(s.discovery, ident),
		Failure:         failureExpr(s.failure, ident),
		Balancer:        balancerExpr(s, ident),
		PoolSize:        s.poolSize,
		ServiceDesc:     name + "_ServiceDesc",
		Deprecated:      s.service.Desc.Options().(*descriptorpb.ServiceOptions).GetDeprecated(),
	}
	l := lifecycleNames(s.service)
	v.Close, v.Conn = l.Close, l.Conn
	v.CloseNote = renamed("Close", l.Close, s.service.Desc)
	v.ConnNote = renamed("Conn", l.Conn, s.service.Desc)
	for _, m := range s.methods {
		v.Methods = append(v.Methods, methodFields(m, ident))
	}
	return v
}

// literal writes a composite literal of typ with the given fields, leaving
// out the empty ones.
func literal(typ string, fields ...[2]string) string {
	var b strings.Builder
	b.WriteString(typ + "{")
	sep := ""
	for _, f := range fields {
		if f[1] == "" {
			continue
		}
		b.WriteString(sep + f[0] + ": " + f[1])
		sep = ", "
	}
	b.WriteString("}")
	return b.String()
}

func discoveryExpr(d discoveryModel, ident func(protogen.GoIdent) string) string {
	dur := func(v time.Duration) string {
		if v == 0 {
			return ""
		}
		return durationExpr(v, ident)
	}
	boolean := func(v bool) string {
		if v {
			return "true"
		}
		return ""
	}
	if c := d.consul; c != nil {
		return literal(ident(consulPackage.Ident("Config")),
			[2]string{"Address", quoteNonEmpty(c.address)},
			[2]string{"Tags", stringSlice(c.tags)},
			[2]string{"Datacenter", quoteNonEmpty(c.datacenter)},
			[2]string{"IncludeFailing", boolean(c.includeFailing)},
			[2]string{"Near", quoteNonEmpty(c.near)},
			[2]string{"Grace", dur(c.grace)},
			[2]string{"FailFast", boolean(c.failFast)},
			[2]string{"CheckInterval", dur(c.checkInterval)},
			[2]string{"DeregisterCriticalAfter", dur(c.deregisterAfter)},
			[2]string{"TTL", dur(c.ttl)},
			[2]string{"GRPCUseTLS", boolean(c.grpcUseTLS)},
			[2]string{"TLSServerName", quoteNonEmpty(c.tlsServerName)})
	}
	if e := d.etcd; e != nil {
		return literal(ident(etcdPackage.Ident("Config")),
			[2]string{"Endpoints", stringSlice(e.endpoints)},
			[2]string{"Prefix", quoteNonEmpty(e.prefix)},
			[2]string{"TTL", dur(e.ttl)},
			[2]string{"PlainValue", boolean(e.plain)},
			[2]string{"CACertFile", quoteNonEmpty(e.caFile)},
			[2]string{"CertFile", quoteNonEmpty(e.certFile)},
			[2]string{"KeyFile", quoteNonEmpty(e.keyFile)})
	}
	if d.dns != nil {
		var port string
		if d.dns.port != 0 {
			port = strconv.FormatUint(uint64(d.dns.port), 10)
		}
		return literal(ident(dnsPackage.Ident("Config")),
			[2]string{"Host", strconv.Quote(d.dns.host)},
			[2]string{"Port", port},
			[2]string{"SRV", boolean(d.dns.srv)},
			[2]string{"Refresh", dur(d.dns.refresh)},
			[2]string{"Server", quoteNonEmpty(d.dns.server)})
	}
	return literal(ident(staticPackage.Ident("Config")), [2]string{"Addresses", stringSlice(d.static)})
}

// failureExpr writes a &discovery.FailurePolicy literal, or "" for none.
func failureExpr(f *failureModel, ident func(protogen.GoIdent) string) string {
	if f == nil {
		return ""
	}
	var mode, stale string
	switch f.mode {
	case lbpb.RegistryFailure_FAIL_FAST:
		mode = ident(discPackage.Ident("FailFast"))
	case lbpb.RegistryFailure_STATIC_FALLBACK:
		mode = ident(discPackage.Ident("StaticFallback"))
	}
	if f.maxStaleness != 0 {
		stale = durationExpr(f.maxStaleness, ident)
	}
	return "&" + literal(ident(discPackage.Ident("FailurePolicy")),
		[2]string{"Mode", mode},
		[2]string{"MaxStaleness", stale},
		[2]string{"Fallback", stringSlice(f.fallback)})
}

// stringSlice writes a []string literal, or "" for none.
func stringSlice(ss []string) string {
	if len(ss) == 0 {
		return ""
	}
	quoted := make([]string, len(ss))
	for i, s := range ss {
		quoted[i] = strconv.Quote(s)
	}
	return "[]string{" + strings.Join(quoted, ", ") + "}"
}

// balancerExpr writes the Config literal of the service's policy package:
// each policy is one package under runtime/balancer.
func balancerExpr(s *serviceModel, ident func(protogen.GoIdent) string) string {
	config := func(pkg string) string {
		return ident(protogen.GoImportPath(balancerPackages + pkg).Ident("Config"))
	}
	num := func(n uint64) string {
		if n == 0 {
			return ""
		}
		return strconv.FormatUint(n, 10)
	}
	switch s.policy {
	case lbpb.Policy_PICK_FIRST:
		return config("pickfirst") + "{}"
	case lbpb.Policy_RANDOM:
		return config("random") + "{}"
	case lbpb.Policy_P2C_EWMA:
		var decay string
		if d := s.rules.GetP2CEwma().GetDecay(); d != nil && d.AsDuration() > 0 {
			decay = durationExpr(d.AsDuration(), ident)
		}
		return literal(config("p2cewma"), [2]string{"Decay", decay})
	case lbpb.Policy_LEAST_REQUEST:
		return literal(config("leastrequest"), [2]string{"ChoiceCount", num(uint64(s.rules.GetLeastRequest().GetChoiceCount()))})
	case lbpb.Policy_RING_HASH:
		r := s.rules.GetRingHash()
		return literal(config("ringhash"),
			[2]string{"MinRingSize", num(r.GetMinRingSize())},
			[2]string{"MaxRingSize", num(r.GetMaxRingSize())})
	case lbpb.Policy_CONSISTENT_HASH:
		c := s.rules.GetConsistentHash()
		var bound, missing string
		if b := c.GetLoadBound(); b != 0 {
			bound = strconv.FormatFloat(b, 'g', -1, 64)
		}
		if c.GetMissingKey() == lbpb.ConsistentHash_FAIL {
			missing = ident(protogen.GoImportPath(balancerPackages + "consistenthash").Ident("FailMissingKey"))
		}
		return literal(config("consistenthash"),
			[2]string{"TableSize", num(c.GetTableSize())},
			[2]string{"LoadBound", bound},
			[2]string{"MissingKey", missing})
	case lbpb.Policy_WEIGHTED_ROUND_ROBIN:
		// The ORCA parameters are refused by the checks.
		return config("weighted") + "{}"
	default:
		return config("roundrobin") + "{}"
	}
}

func methodFields(m *methodModel, ident func(protogen.GoIdent) string) string {
	var timeout, retry, idempotent string
	if m.timeout != 0 {
		timeout = durationExpr(m.timeout, ident)
	}
	if r := m.retry; r != nil {
		cs := make([]string, len(r.codes))
		for i, c := range r.codes {
			cs[i] = ident(codesPackage.Ident(c.String()))
		}
		retry = "&" + literal(ident(lbPackage.Ident("Retry")),
			[2]string{"MaxAttempts", strconv.FormatUint(uint64(r.maxAttempts), 10)},
			[2]string{"InitialBackoff", durationExpr(r.initialBackoff, ident)},
			[2]string{"MaxBackoff", durationExpr(r.maxBackoff, ident)},
			[2]string{"BackoffMultiplier", strconv.FormatFloat(r.multiplier, 'g', -1, 64)},
			[2]string{"RetryableCodes", "[]" + ident(codesPackage.Ident("Code")) + "{" + strings.Join(cs, ", ") + "}"})
	}
	if m.idempotent {
		idempotent = "true"
	}
	l := literal("",
		[2]string{"Name", strconv.Quote(string(m.method.Desc.Name()))},
		[2]string{"Timeout", timeout},
		[2]string{"Retry", retry},
		[2]string{"HashKey", quoteNonEmpty(m.hashKey)},
		[2]string{"Idempotent", idempotent})
	return strings.TrimSuffix(strings.TrimPrefix(l, "{"), "}")
}

func quoteNonEmpty(s string) string {
	if s == "" {
		return ""
	}
	return strconv.Quote(s)
}

// durationExpr writes d in the largest whole unit: "2 * time.Second".
func durationExpr(d time.Duration, ident func(protogen.GoIdent) string) string {
	units := []struct {
		d    time.Duration
		name string
	}{{time.Hour, "Hour"}, {time.Minute, "Minute"}, {time.Second, "Second"}, {time.Millisecond, "Millisecond"}, {time.Microsecond, "Microsecond"}, {time.Nanosecond, "Nanosecond"}}
	for _, u := range units {
		if d%u.d == 0 {
			unit := ident(timePackage.Ident(u.name))
			if d == u.d {
				return unit
			}
			return fmt.Sprintf("%d * %s", d/u.d, unit)
		}
	}
	return "" // unreachable: every duration is a whole number of nanoseconds
}

package main

import (
	"time"

	"google.golang.org/protobuf/compiler/protogen"
)

// This file is the plugin's model of a file: what the checks (options.go,
// policies.go, names.go) make of its (lb.service) and (lb.method) options,
// and all that emission reads. Its fields are data: names, typed option
// values and identifiers of other packages, which the templates write
// through protogen, never Go source.

// Import paths of the generated code.
const (
	contextPackage   = protogen.GoImportPath("context")
	grpcPackage      = protogen.GoImportPath("google.golang.org/grpc")
	codesPackage     = protogen.GoImportPath("google.golang.org/grpc/codes")
	lbPackage        = protogen.GoImportPath("github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/lb")
	discoveryPackage = protogen.GoImportPath("github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery")
	staticPackage    = protogen.GoImportPath("github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/static")
	dnsPackage       = protogen.GoImportPath("github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/dns")
	etcdPackage      = protogen.GoImportPath("github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/etcd")
	consulPackage    = protogen.GoImportPath("github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/consul")
	// kubernetesPackage is a Go module of its own (client-go), which
	// users of the kubernetes backend `go get`.
	kubernetesPackage = protogen.GoImportPath("github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/kubernetes")
	// balancerPackages is the parent of the policy packages.
	balancerPackages = "github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/balancer/"
)

// idents are the identifiers of other packages that every generated file
// may name, by package: the templates write {{ident .LB.Dial}}.
type idents struct {
	Context       protogen.GoIdent // context.Context
	Code          protogen.GoIdent // codes.Code
	FailurePolicy protogen.GoIdent // discovery.FailurePolicy
	GRPC          struct{ ClientConn, Server, ServerOption protogen.GoIdent }
	LB            struct {
		SupportPackage                         protogen.GoIdent // the compile-time handshake
		Service, Method, Retry, Hedging        protogen.GoIdent
		Connection, RetryBudget                protogen.GoIdent
		OutlierEjection, FailurePercentage     protogen.GoIdent
		SlowStart, ZoneAware, Subset           protogen.GoIdent
		Conn, Dial, DialOption, HedgeStats     protogen.GoIdent
		WithTransportCredentials, WithInsecure protogen.GoIdent
		ServerOptions, Register                protogen.GoIdent
		RegisterOption, Registration           protogen.GoIdent
	}
}

// goIdents are the idents, computed once.
var goIdents = func() idents {
	var i idents
	i.Context = contextPackage.Ident("Context")
	i.Code = codesPackage.Ident("Code")
	i.FailurePolicy = discoveryPackage.Ident("FailurePolicy")
	i.GRPC.ClientConn = grpcPackage.Ident("ClientConn")
	i.GRPC.Server = grpcPackage.Ident("Server")
	i.GRPC.ServerOption = grpcPackage.Ident("ServerOption")
	lb := &i.LB
	lb.SupportPackage = lbPackage.Ident("SupportPackageIsVersion1")
	lb.Service = lbPackage.Ident("Service")
	lb.Method = lbPackage.Ident("Method")
	lb.Retry = lbPackage.Ident("Retry")
	lb.Hedging = lbPackage.Ident("Hedging")
	lb.Connection = lbPackage.Ident("Connection")
	lb.RetryBudget = lbPackage.Ident("RetryBudget")
	lb.OutlierEjection = lbPackage.Ident("OutlierEjection")
	lb.FailurePercentage = lbPackage.Ident("FailurePercentage")
	lb.SlowStart = lbPackage.Ident("SlowStart")
	lb.ZoneAware = lbPackage.Ident("ZoneAware")
	lb.Subset = lbPackage.Ident("Subset")
	lb.Conn = lbPackage.Ident("Conn")
	lb.Dial = lbPackage.Ident("Dial")
	lb.DialOption = lbPackage.Ident("DialOption")
	lb.HedgeStats = lbPackage.Ident("HedgeStats")
	lb.WithTransportCredentials = lbPackage.Ident("WithTransportCredentials")
	lb.WithInsecure = lbPackage.Ident("WithInsecure")
	lb.ServerOptions = lbPackage.Ident("ServerOptions")
	lb.Register = lbPackage.Ident("Register")
	lb.RegisterOption = lbPackage.Ident("RegisterOption")
	lb.Registration = lbPackage.Ident("Registration")
	return i
}()

// fileModel is one file with annotated services: what its _lb.pb.go says.
type fileModel struct {
	file *protogen.File // where it is written, and what errors name

	Version       string // protoc-gen-go-lb's
	ProtocVersion string // the compiler's, "(unknown)" from buf
	Source        string // the proto file's path
	Package       protogen.GoPackageName
	Services      []*serviceModel
	idents
}

// serviceModel is one annotated service, checked: its lb.Service value,
// its balanced client and its server helpers.
type serviceModel struct {
	service *protogen.Service // what the collision checks and errors name

	Names        names
	FullName     string
	RegistryName string
	// Comment is the service's leading comment, line by line, without
	// the comment markers; nil for none.
	Comment    []string
	Deprecated bool

	Discovery          discoveryModel
	Failure            *failureModel    // nil: the backend's default
	Balancer           *balancerModel   // nil only when the policy is unknown
	PoolSize           uint32           // 0: one connection to each instance
	Connection         *connectionModel // nil: grpc-go's defaults
	RetryBudget        *budgetModel     // nil: the runtime's default
	DisableHealthCheck bool
	OutlierEjection    *outlierModel   // nil: no ejection
	SlowStart          *slowStartModel // nil: no ramp
	ZoneAware          *zoneAwareModel // nil: every instance alike
	Subset             *subsetModel    // nil: every instance
	// Streams are the names of the service's streaming methods (client,
	// server or bidi), in declaration order.
	Streams []string
	Methods []*methodModel // the methods with settings
	idents
}

// discoveryModel is the Config of the service's discovery backend.
type discoveryModel struct {
	Type   protogen.GoIdent // static.Config, dns.Config, ...
	Fields []field          // the settings that are set, in order

	backend  *backend // its row of the backend table; nil when none is set
	settings any      // its settings: *staticModel, *dnsModel, ...
}

// The backends' settings, named and typed as their Config's fields, in
// the order the literal writes them; a zero value is left out.
type (
	staticModel struct {
		Addresses []string
	}
	dnsModel struct {
		Host    string
		Port    uint32
		SRV     bool
		Refresh time.Duration
		Server  string
	}
	etcdModel struct {
		Endpoints                     []string
		Prefix                        string
		TTL                           time.Duration
		PlainValue                    bool
		CACertFile, CertFile, KeyFile string
	}
	consulModel struct {
		Address                      string
		Tags                         []string
		Datacenter                   string
		IncludeFailing               bool
		Near                         string
		Grace                        time.Duration
		FailFast                     bool
		CheckInterval                time.Duration
		DeregisterCriticalAfter, TTL time.Duration
		GRPCUseTLS                   bool
		TLSServerName                string
	}
	kubernetesModel struct {
		Namespace, Service, Port string
	}
)

// failureModel is (lb.service).on_registry_failure, as a
// discovery.FailurePolicy.
type failureModel struct {
	Mode         *protogen.GoIdent // nil: KeepLastGood, the zero mode
	MaxStaleness time.Duration
	Fallback     []string
}

// connectionModel is (lb.service).connection, as an lb.Connection.
type connectionModel struct {
	KeepaliveTime, KeepaliveTimeout         time.Duration
	MaxConnectionAge, MaxConnectionAgeGrace time.Duration
	MaxConnectionIdle                       time.Duration
}

// budgetModel is (lb.service).retry_budget, as an lb.RetryBudget.
type budgetModel struct {
	MaxTokens  uint32
	TokenRatio float64
	Disabled   bool
}

// outlierModel is (lb.service).outlier_ejection, as an lb.OutlierEjection;
// a zero field is the runtime's default.
type outlierModel struct {
	ConsecutiveFailures                         int // -1: that mode is off
	FailurePercentage                           *failurePercentageModel
	Interval, BaseEjectionTime, MaxEjectionTime time.Duration
	MaxEjectedPercent                           int
	FailureCodes                                []protogen.GoIdent // codes.Unavailable, ...
	DisableFailurePercentage                    bool
}

// failurePercentageModel is outlier_ejection.failure_percentage, as an
// lb.FailurePercentage.
type failurePercentageModel struct {
	Threshold, MinimumRequests int
}

// zoneAwareModel is (lb.service).zone_aware, as an lb.ZoneAware.
type zoneAwareModel struct {
	Overprovisioning float64
	PanicThreshold   float64 // -1: never panic
}

// subsetModel is (lb.service).subset, as an lb.Subset.
type subsetModel struct {
	Size int
}

// slowStartModel is (lb.service).slow_start, as an lb.SlowStart.
type slowStartModel struct {
	Window                       time.Duration
	Aggression, MinWeightPercent float64
}

// balancerModel is the service's policy: the Config of its package, with
// the fields that are set.
type balancerModel struct {
	policy *policy // its row of the policy table

	Type   protogen.GoIdent // roundrobin.Config, p2cewma.Config, ...
	Fields []field
	// keyRequired says why each unary call needs a (lb.method).hash_key;
	// "" when it does not.
	keyRequired string
}

// field is a field of a literal: the Go field's name and its typed value
// (a time.Duration, a number, a string, a protogen.GoIdent, ...).
type field struct {
	Name  string
	Value any
}

// methodModel is one method's (lb.method), as an lb.Method.
type methodModel struct {
	Name         string // the method's name within the service
	Timeout      time.Duration
	Retry        *retryModel
	HashKey      string
	Idempotent   bool
	WaitForReady bool
	Hedging      *hedgingModel
}

// retryModel is a method's retry policy, defaults applied, as an lb.Retry.
type retryModel struct {
	MaxAttempts                uint32
	InitialBackoff, MaxBackoff time.Duration
	BackoffMultiplier          float64
	RetryableCodes             []protogen.GoIdent // codes.Unavailable, ...
}

// hedgingModel is a method's hedging policy, as an lb.Hedging.
type hedgingModel struct {
	MaxAttempts uint32
	Delay       time.Duration
}

// Package kubernetes is discovery through the Kubernetes API: a resolver
// that follows a Service's EndpointSlices (label kubernetes.io/service-name)
// with one list-and-watch per process, merging every slice of the Service,
// IPv4 and IPv6 alike. No registrar: the Service's selector puts pods in
// the slices, and their readiness probe (which the generated health service
// answers) decides which are ready.
//
// Importing it registers the "kubernetes" resolver scheme:
//
//	import _ "github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/kubernetes"
//
//	conn, err := grpc.NewClient("kubernetes:///greeter.default:grpc", ...)
//
// It is a module of its own (client-go is large), so users who do not use
// Kubernetes never compile client-go:
//
//	go get github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/kubernetes
//
// Targets: kubernetes:///<service>[.<namespace>[.svc[.<cluster domain>]]][:<port>]
// or kubernetes://<namespace>/<service>[:<port>] (sercand/kuberesolver's
// forms), with the parameters kubeconfig=<path>, context=<name>,
// server=<API server URL> and the failure policy parameters every scheme
// takes (onfailure, maxstale, fallback: see package discovery). The port is
// a port name of the Service ("grpc"), or a number: the pods' port (the
// Service's targetPort, as the slices list it), not the Service's port.
// Without one, the slices' only port is used.
//
// Which endpoints get calls follows kube-proxy: those whose condition ready
// is true (or unset); when no endpoint of the Service is ready, those that
// are serving and terminating; never the others. A pod that starts
// terminating leaves at the next event. Each endpoint's zone reaches
// discovery.Metadata.Zone (for zone-aware routing) and its node
// Metadata.Custom["node"].
//
// Credentials, as client-go programs take them: Config.Kubeconfig (target:
// kubeconfig=) when set; else KUBECONFIG; else the pod's service account
// (in a cluster); else ~/.kube/config. The client needs list and watch on
// endpointslices in the Service's namespace; when it is refused (403) the
// error names the permission and the RBAC rule to add.
//
// When the API server cannot be reached, refuses the client, or the
// Service has no endpoint to call, the failure policy of package discovery
// applies (by default the last good set is kept and the channel is told
// why): a registry failure never becomes an empty address list. Every
// request has a deadline (RequestTimeout; a watch is opened within it and
// ends after at most MaxWatch).
package kubernetes

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/grpclog"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
)

// Scheme is the resolver scheme of Kubernetes targets.
const Scheme = "kubernetes"

// Timeouts.
const (
	// RequestTimeout is the deadline of a list, and of opening a watch.
	RequestTimeout = 10 * time.Second
	// MaxWatch is how long a watch lasts at most: the API server ends it
	// after 5 to 10 minutes (as client-go's reflector asks), and it is
	// opened again from where it was.
	MaxWatch = 10 * time.Minute
)

// NodeKey is the key of discovery.Metadata.Custom that holds an endpoint's
// node name (endpoints[].nodeName).
const NodeKey = "node"

var logger = grpclog.Component("kubernetes")

// ErrForbidden is what a 403 from the API server is reported as (for
// errors.Is); the error says which permission is missing and the RBAC rule
// to add.
var ErrForbidden = errors.New("kubernetes: forbidden")

// Config is the Kubernetes backend of (lb.service).discovery.
type Config struct {
	// Namespace is the Service's namespace. Empty means the kubeconfig
	// context's namespace, in a cluster the pod's own, else "default".
	Namespace string
	// Service is the Kubernetes Service's name, a DNS label. Empty means
	// the service's registry name ((lb.service).name), which must then be
	// one.
	Service string
	// Port is a port name of the Service ("grpc") or the pods' port number
	// ("50051", the targetPort). Empty means the slices' only port.
	Port string
	// Kubeconfig is the path of a kubeconfig file. Empty: KUBECONFIG, else
	// the pod's service account, else ~/.kube/config.
	Kubeconfig string
	// Context is the kubeconfig context. Empty: its current context.
	Context string
}

// target is what a watch resolves: a Service's port, with the credentials
// to ask for it.
type target struct {
	namespace, service, port string
	kubeconfig, context      string
	server                   string // the API server's URL, replacing the kubeconfig's; empty: theirs
}

var (
	dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	portName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
)

// CheckService checks a Service name: a DNS label of at most 63
// characters that starts with a letter (RFC 1035, as Kubernetes requires).
func CheckService(name string) error {
	if len(name) == 0 || len(name) > 63 || !dnsLabel.MatchString(name) || name[0] < 'a' {
		return fmt.Errorf("service %q is not a Kubernetes Service name (a DNS label: lower case letters, digits and '-', at most 63, starting with a letter)", name)
	}
	return nil
}

// CheckNamespace checks a namespace name: a DNS label (RFC 1123).
func CheckNamespace(ns string) error {
	if len(ns) == 0 || len(ns) > 63 || !dnsLabel.MatchString(ns) {
		return fmt.Errorf("namespace %q is not a Kubernetes namespace (a DNS label: lower case letters, digits and '-', at most 63)", ns)
	}
	return nil
}

// CheckPort checks a port: a port name (lower case letters, digits and
// '-', at most 15, with a letter) or a number 1-65535.
func CheckPort(p string) error {
	if p == "" {
		return nil
	}
	if n, err := strconv.Atoi(p); err == nil {
		if n < 1 || n > 65535 {
			return fmt.Errorf("port %d is not in 1-65535", n)
		}
		return nil
	}
	if len(p) > 15 || !portName.MatchString(p) || !strings.ContainsAny(p, "abcdefghijklmnopqrstuvwxyz") || strings.Contains(p, "--") {
		return fmt.Errorf("port %q is neither a number 1-65535 nor a port name (lower case letters, digits and '-', at most 15, with a letter)", p)
	}
	return nil
}

// target checks c's settings for service (the registry name, used when
// c.Service is empty), at registry (the API server's URL) when not empty.
func (c Config) target(service, registry string) (target, error) {
	t := target{namespace: c.Namespace, service: c.Service, port: c.Port, kubeconfig: c.Kubeconfig, context: c.Context, server: registry}
	if t.service == "" {
		t.service = service
	}
	if err := CheckService(t.service); err != nil {
		return target{}, err
	}
	if t.namespace != "" {
		if err := CheckNamespace(t.namespace); err != nil {
			return target{}, err
		}
	}
	if err := CheckPort(t.port); err != nil {
		return target{}, err
	}
	if t.server != "" {
		if err := checkServer(t.server); err != nil {
			return target{}, err
		}
	}
	return t, nil
}

// checkServer checks an API server address: https://host[:port] or
// host:port.
func checkServer(s string) error {
	hostport := s
	if rest, ok := strings.CutPrefix(s, "https://"); ok {
		hostport = strings.TrimSuffix(rest, "/")
		if !strings.Contains(hostport, ":") || strings.HasSuffix(hostport, "]") {
			return nil // the default port
		}
	} else if strings.Contains(s, "://") {
		return fmt.Errorf("API server %q: want https://host:port", s)
	}
	if _, err := discovery.ParseAddress(hostport); err != nil {
		return fmt.Errorf("API server %q: %w", s, err)
	}
	return nil
}

// Target returns the kubernetes target of c for service. A non-empty
// registry replaces the API server of the kubeconfig.
func (c Config) Target(service, registry string) (string, error) {
	t, err := c.target(service, registry)
	if err != nil {
		return "", fmt.Errorf("kubernetes: %w", err)
	}
	return t.url().String(), nil
}

func (t target) url() *url.URL {
	host := t.service
	if t.namespace != "" {
		host += "." + t.namespace
	}
	if t.port != "" {
		host += ":" + t.port
	}
	q := url.Values{}
	if t.kubeconfig != "" {
		q.Set("kubeconfig", t.kubeconfig)
	}
	if t.context != "" {
		q.Set("context", t.context)
	}
	if t.server != "" {
		q.Set("server", t.server)
	}
	return &url.URL{Scheme: Scheme, Path: "/" + host, RawQuery: q.Encode()}
}

// parseTarget reads kubernetes:///svc[.ns[.svc[.domain]]][:port] and
// kubernetes://ns/svc[:port].
func parseTarget(u *url.URL) (target, error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("kubernetes: target %q: %s", discovery.Redact(u), fmt.Sprintf(format, a...))
	}
	if u.User != nil {
		return target{}, bad("credentials are not allowed in a target: use a kubeconfig or the pod's service account")
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return target{}, bad("bad query")
	}
	var c Config
	var server string
	for k, vs := range q {
		v := vs[len(vs)-1]
		switch k {
		case "kubeconfig":
			c.Kubeconfig = v
		case "context":
			c.Context = v
		case "server":
			server = v
		default:
			return target{}, bad("unknown parameter %q (want kubeconfig, context, server, onfailure, maxstale or fallback)", k)
		}
	}
	name := strings.TrimPrefix(u.Path, "/")
	if strings.Contains(name, "/") {
		return target{}, bad("want kubernetes:///<service>[.<namespace>][:<port>] or kubernetes://<namespace>/<service>[:<port>]")
	}
	if i := strings.LastIndexByte(name, ':'); i >= 0 {
		name, c.Port = name[:i], name[i+1:]
		if c.Port == "" {
			return target{}, bad("empty port")
		}
	}
	svc, rest, _ := strings.Cut(name, ".")
	if rest != "" {
		// ns, ns.svc or ns.svc.<cluster domain>: the Service's DNS name.
		ns, tail, _ := strings.Cut(rest, ".")
		if tail != "" && tail != "svc" && !strings.HasPrefix(tail, "svc.") {
			return target{}, bad("%q is not <service>.<namespace>[.svc[.<cluster domain>]]", name)
		}
		c.Namespace = ns
	}
	if u.Host != "" {
		if c.Namespace != "" {
			return target{}, bad("the namespace is given twice")
		}
		c.Namespace = u.Host
	}
	t, err := c.target(svc, server)
	if err != nil {
		return target{}, bad("%v", err)
	}
	return t, nil
}

package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/resolver"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
)

func init() {
	resolver.Register(discovery.NewBuilder(Scheme, parse))
}

// NewBuilder returns a Builder of the kubernetes scheme, for
// grpc.WithResolvers; importing the package registers one already.
func NewBuilder() resolver.Builder { return discovery.NewBuilder(Scheme, parse) }

func parse(u *url.URL) (discovery.Spec, error) { return parseWith(u, "") }

// parseWith is parse for a builder whose watches are its own (options,
// in the watch's Key): tests' cold starts.
func parseWith(u *url.URL, options string) (discovery.Spec, error) {
	t, err := parseTarget(u)
	if err != nil {
		return discovery.Spec{}, err
	}
	spec := t.spec()
	spec.Key.Options = options
	return spec, nil
}

// Spec returns the watch of service (the registry name, used when
// c.Service is empty).
func (c Config) Spec(service, registry string) (discovery.Spec, error) {
	t, err := c.target(service, registry)
	if err != nil {
		return discovery.Spec{}, fmt.Errorf("kubernetes: %w", err)
	}
	return t.spec(), nil
}

// Backoff is the wait between failed watches: short, so that the view is
// back within about a second of the API server's return.
var Backoff = discovery.Backoff{Base: 100 * time.Millisecond, Max: time.Second}

func (t target) spec() discovery.Spec {
	t = t.withNamespace()
	f := url.Values{}
	if t.port != "" {
		f.Set("port", t.port)
	}
	// Where the credentials come from: the file, else the environment as
	// it is now. Paths and context names are not secrets.
	switch {
	case t.kubeconfig != "":
		f.Set("kubeconfig", t.kubeconfig)
	case os.Getenv("KUBECONFIG") != "":
		f.Set("kubeconfig", os.Getenv("KUBECONFIG"))
	case inCluster():
		f.Set("incluster", "true")
	}
	if t.context != "" {
		f.Set("context", t.context)
	}
	return discovery.Spec{
		Key: discovery.Key{Scheme: Scheme, Registry: t.server, Service: t.namespace + "/" + t.service, Filters: f.Encode()},
		New: func() (discovery.Source, error) {
			cfg, err := t.restConfig()
			if err != nil {
				return nil, err
			}
			hc, err := rest.HTTPClientFor(cfg)
			if err != nil {
				return nil, fmt.Errorf("kubernetes: client: %w", err)
			}
			cs, err := kubernetes.NewForConfigAndClient(cfg, hc)
			if err != nil {
				return nil, fmt.Errorf("kubernetes: client: %w", err)
			}
			return &source{t: t, client: cs.DiscoveryV1().EndpointSlices(t.namespace), http: hc}, nil
		},
		Backoff: Backoff,
	}
}

// endpointSlices is the part of client-go's EndpointSliceInterface the
// source uses.
type endpointSlices interface {
	List(ctx context.Context, opts metav1.ListOptions) (*discoveryv1.EndpointSliceList, error)
	Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
}

// source lists a Service's EndpointSlices, then watches them from the
// list's resource version.
type source struct {
	t      target
	client endpointSlices
	http   *http.Client

	// Owned by the Watch goroutine.
	set *sliceSet
	rv  string // the resource version the view is at
}

// Close closes the client's idle connections.
func (s *source) Close() { s.http.CloseIdleConnections() }

// NoInstances says why there is no endpoint to call.
func (s *source) NoInstances() error {
	all, _ := s.set.count()
	return discovery.NoInstancesError(fmt.Sprintf("kubernetes: service %s/%s has no ready or serving endpoint (%d endpoints in %d slices)",
		s.t.namespace, s.t.service, all, len(s.set.bySlice)))
}

// watchTimeout is how long the API server keeps a watch open: 5 to 10
// minutes, as client-go's reflector asks, or shortWatch when a test set it.
func watchTimeout() time.Duration {
	if d := shortWatch.Load(); d > 0 {
		return time.Duration(d)
	}
	return MaxWatch/2 + rand.N(MaxWatch/2)
}

// shortWatch is a test's watch timeout; 0: none.
var shortWatch atomic.Int64

// errGone is a watch that asked for a resource version the API server no
// longer has: the source lists again at once.
var errGone = errors.New("resource version too old")

func (s *source) Watch(ctx context.Context, u discovery.Updates) error {
	for {
		err := s.listAndWatch(ctx, u)
		if ctx.Err() != nil {
			return nil
		}
		if !errors.Is(err, errGone) {
			return err
		}
	}
}

// listAndWatch lists the slices, opens a watch from there, and only then
// publishes the list (a client that may list but not watch keeps its last
// good set instead of flapping), then applies every event.
func (s *source) listAndWatch(ctx context.Context, u discovery.Updates) error {
	selector := discoveryv1.LabelServiceName + "=" + s.t.service
	list, err := s.list(ctx, selector)
	if err != nil {
		return s.t.explain("list", err)
	}
	w, err := s.watch(ctx, selector, list.ResourceVersion)
	if err != nil {
		return s.t.explain("watch", err)
	}
	s.rv = list.ResourceVersion
	if s.set == nil {
		s.set = newSliceSet(s.t.port)
	}
	s.set.reset(list.Items, u)
	u.Flush()
	for {
		err := s.follow(ctx, w, u)
		w.Stop()
		if err != nil || ctx.Err() != nil {
			return err
		}
		// The API server ended the watch (its timeout): open it again from
		// where it was.
		if w, err = s.watch(ctx, selector, s.rv); err != nil {
			if apierrors.IsGone(err) || apierrors.IsResourceExpired(err) {
				return errGone
			}
			return s.t.explain("watch", err)
		}
	}
}

// list lists every slice of the Service, page by page, each page within
// RequestTimeout.
func (s *source) list(ctx context.Context, selector string) (*discoveryv1.EndpointSliceList, error) {
	var all *discoveryv1.EndpointSliceList
	opts := metav1.ListOptions{LabelSelector: selector, Limit: 500}
	for {
		lctx, cancel := context.WithTimeout(ctx, RequestTimeout)
		page, err := s.client.List(lctx, opts)
		cancel()
		if err != nil {
			if apierrors.IsResourceExpired(err) && opts.Continue != "" {
				// The continue token expired: list from the start.
				all, opts.Continue = nil, ""
				continue
			}
			return nil, err
		}
		if all == nil {
			all = page
		} else {
			all.Items = append(all.Items, page.Items...)
			all.ResourceVersion = page.ResourceVersion
		}
		if page.Continue == "" {
			return all, nil
		}
		opts.Continue = page.Continue
	}
}

// watch opens a watch from rv: the request has RequestTimeout to answer,
// the API server ends the watch after watchTimeout, and the client after
// that and RequestTimeout more.
func (s *source) watch(ctx context.Context, selector, rv string) (watch.Interface, error) {
	timeout := watchTimeout()
	secs := int64(timeout / time.Second)
	wctx, cancel := context.WithTimeout(ctx, timeout+RequestTimeout)
	opened := make(chan struct{})
	go func() {
		select {
		case <-opened:
		case <-time.After(RequestTimeout):
			cancel()
		}
	}()
	w, err := s.client.Watch(wctx, metav1.ListOptions{LabelSelector: selector, ResourceVersion: rv, AllowWatchBookmarks: true, TimeoutSeconds: &secs})
	close(opened)
	if err != nil {
		cancel()
		return nil, err
	}
	return stopWatch{Interface: w, cancel: cancel}, nil
}

// stopWatch is a watch whose Stop also ends its context.
type stopWatch struct {
	watch.Interface
	cancel context.CancelFunc
}

func (w stopWatch) Stop() {
	w.Interface.Stop()
	w.cancel()
}

// follow applies w's events until it ends: nil when the API server ended
// it, else why.
func (s *source) follow(ctx context.Context, w watch.Interface, u discovery.Updates) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.ResultChan():
			if !ok {
				return nil
			}
			switch ev.Type {
			case watch.Added, watch.Modified, watch.Deleted:
				es, ok := ev.Object.(*discoveryv1.EndpointSlice)
				if !ok {
					return fmt.Errorf("kubernetes: watch of %s/%s: a %T, not an EndpointSlice", s.t.namespace, s.t.service, ev.Object)
				}
				if ev.Type == watch.Deleted {
					s.set.remove(es.Name, u)
				} else {
					s.set.update(es, u)
				}
				s.rv = es.ResourceVersion
				u.Flush()
			case watch.Bookmark:
				if es, ok := ev.Object.(*discoveryv1.EndpointSlice); ok {
					s.rv = es.ResourceVersion
				}
			case watch.Error:
				err := apierrors.FromObject(ev.Object)
				if apierrors.IsGone(err) || apierrors.IsResourceExpired(err) {
					return errGone
				}
				return s.t.explain("watch", err)
			}
		}
	}
}

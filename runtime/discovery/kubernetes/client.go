package kubernetes

import (
	"errors"
	"fmt"
	"os"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// serviceAccountNamespace is where a pod reads its own namespace.
var serviceAccountNamespace = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// inCluster reports whether the process runs in a pod with a service
// account, as rest.InClusterConfig sees it.
func inCluster() bool {
	if os.Getenv("KUBERNETES_SERVICE_HOST") == "" || os.Getenv("KUBERNETES_SERVICE_PORT") == "" {
		return false
	}
	_, err := os.Stat("/var/run/secrets/kubernetes.io/serviceaccount/token")
	return err == nil
}

// loader returns the kubeconfig loader of t: its file, else KUBECONFIG,
// else ~/.kube/config.
func (t target) loader() clientcmd.ClientConfig {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if t.kubeconfig != "" {
		rules.ExplicitPath = t.kubeconfig
	}
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: t.context})
}

// useKubeconfig reports whether t's credentials come from a kubeconfig
// rather than the pod's service account: an explicit file or KUBECONFIG
// win over the service account, which wins over ~/.kube/config.
func (t target) useKubeconfig() bool {
	return t.kubeconfig != "" || os.Getenv(clientcmd.RecommendedConfigPathEnvVar) != "" || !inCluster()
}

// withNamespace fills in the default namespace: the kubeconfig context's,
// in a cluster the pod's own, else "default".
func (t target) withNamespace() target {
	if t.namespace != "" {
		return t
	}
	t.namespace = "default"
	if t.useKubeconfig() {
		if ns, _, err := t.loader().Namespace(); err == nil && ns != "" {
			t.namespace = ns
		}
		return t
	}
	if b, err := os.ReadFile(serviceAccountNamespace); err == nil && strings.TrimSpace(string(b)) != "" {
		t.namespace = strings.TrimSpace(string(b))
	}
	return t
}

// restConfig returns the API server and credentials of t.
func (t target) restConfig() (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	if t.useKubeconfig() {
		cfg, err = t.loader().ClientConfig()
		if clientcmd.IsEmptyConfig(err) {
			return nil, errors.New("kubernetes: no credentials: not in a pod with a service account, KUBECONFIG is not set and ~/.kube/config has no cluster")
		}
	} else {
		cfg, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes: credentials: %w", err)
	}
	if t.server != "" {
		cfg.Host = t.server
	}
	cfg.UserAgent = "protoc-gen-go-lb"
	// Protobuf, as Kubernetes' own components speak to the API server:
	// smaller and faster to decode than JSON.
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	// Each watch makes one list and one watch at a time; the default rate
	// limit (5 a second) never delays them.
	return cfg, nil
}

// explain turns an API error of verb ("list", "watch") into one that
// says what to do.
func (t target) explain(verb string, err error) error {
	switch {
	case apierrors.IsForbidden(err):
		return fmt.Errorf("%w: %v: the client needs %q on endpointslices in namespace %q; add to a Role bound to its service account the rule "+
			`{apiGroups: ["discovery.k8s.io"], resources: ["endpointslices"], verbs: ["list", "watch"]}`+
			" (see example/kubernetes/rbac.yaml)", ErrForbidden, err, verb, t.namespace)
	case apierrors.IsUnauthorized(err):
		return fmt.Errorf("kubernetes: %s endpointslices in %q: the API server does not accept the credentials (401): %w", verb, t.namespace, err)
	}
	return fmt.Errorf("kubernetes: %s endpointslices of %s/%s: %w", verb, t.namespace, t.service, err)
}

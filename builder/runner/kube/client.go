package kube

import (
	"fmt"
	"os"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Connection says how to reach the cluster: Kubeconfig and Context, or,
// both empty, the in-cluster config when kiln runs in a pod, else
// $KUBECONFIG, else ~/.kube/config.
type Connection struct {
	Kubeconfig string
	Context    string
}

// RESTConfig loads the client configuration c names.
func (c Connection) RESTConfig() (*rest.Config, error) {
	if c.Kubeconfig == "" && c.Context == "" && os.Getenv("KUBERNETES_SERVICE_HOST") != "" {
		cfg, err := rest.InClusterConfig()
		if err == nil {
			return cfg, nil
		}
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if c.Kubeconfig != "" {
		rules.ExplicitPath = c.Kubeconfig
	}
	overrides := &clientcmd.ConfigOverrides{CurrentContext: c.Context}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubernetes client configuration: %w", err)
	}
	return cfg, nil
}

// Namespace is the kubeconfig context's namespace (in a pod: the pod's),
// else "default".
func (c Connection) Namespace() string {
	if c.Kubeconfig == "" && c.Context == "" && os.Getenv("KUBERNETES_SERVICE_HOST") != "" {
		if b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil && len(b) > 0 {
			return string(b)
		}
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if c.Kubeconfig != "" {
		rules.ExplicitPath = c.Kubeconfig
	}
	ns, _, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: c.Context}).Namespace()
	if err != nil || ns == "" {
		return defaultNamespace
	}
	return ns
}

// API connects to the cluster c names.
func (c Connection) API() (API, error) {
	cfg, err := c.RESTConfig()
	if err != nil {
		return nil, err
	}
	return newRESTAPI(cfg)
}

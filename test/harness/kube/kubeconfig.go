//go:build linux

package kube

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
)

// kubeconfig returns a kubeconfig for server, trusting caPEM, that
// authenticates with a client certificate (cert) or a bearer token.
func kubeconfig(server string, caPEM []byte, user string, cert *certPair, token string) *clientcmdapi.Config {
	auth := &clientcmdapi.AuthInfo{Token: token}
	if cert != nil {
		auth.ClientCertificateData, auth.ClientKeyData = cert.CertPEM, cert.KeyPEM
	}
	return &clientcmdapi.Config{
		Clusters:       map[string]*clientcmdapi.Cluster{"kiln-test": {Server: server, CertificateAuthorityData: caPEM}},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{user: auth},
		Contexts:       map[string]*clientcmdapi.Context{user + "@kiln-test": {Cluster: "kiln-test", AuthInfo: user, Namespace: "default"}},
		CurrentContext: user + "@kiln-test",
	}
}

func writeKubeconfig(path string, cfg *clientcmdapi.Config) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return clientcmd.WriteToFile(*cfg, path)
}

// ServiceAccountKubeconfig writes, and returns the path of, a kubeconfig
// that authenticates as the ServiceAccount namespace/name with a bound
// token from the TokenRequest API (valid one hour). The ServiceAccount
// must exist. It grants exactly what RBAC grants that ServiceAccount, so
// RBAC tests can use it as the runner's in-cluster identity.
func (c *Cluster) ServiceAccountKubeconfig(t testing.TB, namespace, name string) string {
	t.Helper()
	tr, err := c.Client.CoreV1().ServiceAccounts(namespace).CreateToken(t.Context(), name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(time.Hour / time.Second))},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("kube: token for serviceaccount %s/%s: %v", namespace, name, err)
	}
	cfg := kubeconfig(c.Server, c.CAPEM, "system:serviceaccount:"+namespace+":"+name, nil, tr.Status.Token)
	cfg.Contexts[cfg.CurrentContext].Namespace = namespace
	path := filepath.Join(t.TempDir(), fmt.Sprintf("sa-%s-%s.kubeconfig", namespace, name))
	if err := writeKubeconfig(path, cfg); err != nil {
		t.Fatalf("kube: %v", err)
	}
	return path
}

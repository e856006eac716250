//go:build linux

package kube

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Version is the Kubernetes version of the cluster's binaries.
const Version = "v1.37.2"

// Names and values the cluster uses, for tests to select or tolerate.
const (
	// RealNodeName is the name of the real node. The kubelet runs with
	// --hostname-override=localhost so that the apiserver reaches it, for
	// logs, at localhost:<port> (the kubelet refuses a loopback node IP).
	RealNodeName = "localhost"
	// FakeNodeAnnotation marks the nodes kwok manages (value "fake").
	FakeNodeAnnotation = "kwok.x-k8s.io/node"
	// FakeTaintKey is the taint key to use on fake nodes that no stray pod
	// may land on; Start adds no taint by itself.
	FakeTaintKey = "kwok.x-k8s.io/node"
	// ServiceCIDR is the cluster's service IP range.
	ServiceCIDR = "10.96.0.0/16"
)

// Options configures a test cluster.
type Options struct {
	// Registry is the host:port of a plain-HTTP registry on this machine
	// (e.g. harness.NewRegistry(t).Addr). Required: the real node's
	// containerd pulls from it over HTTP (the pause image is pushed there
	// as kiln-test/pause:1), and pods on the real node may use its images.
	Registry string
	// FakeNodes are the kwok nodes to create.
	FakeNodes []FakeNode
	// FakePodsWaitForRelease keeps every Job's pod on a fake node Running
	// until its ReleaseAnnotation is "true" (as if each had HoldAnnotation),
	// for tests whose agent does the pods' work. Otherwise such pods end as
	// soon as kwok made them Running.
	FakePodsWaitForRelease bool
}

// FakeNode is a node that kwok simulates: it never runs a container, but
// pods bound to a Ready one become Running and, when a Job owns them,
// Succeeded (see TerminationMessageAnnotation).
type FakeNode struct {
	Name string
	Arch string // kubernetes.io/arch label and nodeInfo.architecture, e.g. "arm64"
	// Ready false makes a node that kwok leaves alone: created NotReady
	// (the node controller later turns Ready to Unknown and taints it
	// not-ready/unreachable), so the scheduler never uses it.
	Ready  bool
	Taints []corev1.Taint
	Labels map[string]string // added to kubernetes.io/{arch,os,hostname} and type=kwok
}

// Cluster is a running test cluster: etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler, one real node (kubelet +
// containerd + runc) and kwok's fake nodes, all on 127.0.0.1.
type Cluster struct {
	// Kubeconfig is the path of an admin kubeconfig (group system:masters,
	// client certificate) for Server.
	Kubeconfig string
	// Client is a clientset with the admin identity.
	Client kubernetes.Interface
	// RestConfig is the admin client's configuration.
	RestConfig *rest.Config
	// RealNode is the name of the real amd64 node (RealNodeName).
	RealNode string
	// Server is the apiserver's URL, https://127.0.0.1:PORT.
	Server string
	// CAPEM is the cluster CA, which signs the apiserver's certificate.
	CAPEM []byte
	// Dir holds the cluster's state and a log file per process (logs/).
	Dir string
	// NodeDir holds the real node's containerd and kubelet state, in a
	// short folder of its own (unix socket paths must stay under 108 bytes).
	NodeDir string

	t        testing.TB
	bins     string
	pki      *pki
	procs    []*proc // in start order
	cgroups  *cgroupTree
	fakeLogs *http.Server
	mu       sync.Mutex
	stopOnce sync.Once
}

// BinDir returns the folder of the cached binaries .ci/k8s.sh builds:
// $KILN_TEST_CACHE/k8s-v1.37.2/bin (KILN_TEST_CACHE defaults to
// /var/cache/kiln-test).
func BinDir() string {
	cache := os.Getenv("KILN_TEST_CACHE")
	if cache == "" {
		cache = "/var/cache/kiln-test"
	}
	return filepath.Join(cache, "k8s-"+Version, "bin")
}

var requiredBins = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kwok", "pause",
	"node-initialize.yaml", "node-heartbeat-with-lease.yaml", "pod-ready.yaml", "pod-delete.yaml"}

// host programs the real node needs, with where Debian puts them.
var hostPrograms = map[string]string{
	"containerd": "/usr/bin/containerd",
	"runc":       "/usr/sbin/runc",
	"unshare":    "/usr/bin/unshare",
	"nsenter":    "/usr/bin/nsenter",
	"flock":      "/usr/bin/flock",
	"ip":         "/usr/sbin/ip",
	"sh":         "/bin/sh",
}

// cniDir is where Debian's containernetworking-plugins puts the plugins.
const cniDir = "/usr/lib/cni"

// Missing reports why a cluster cannot start on this machine ("" if it
// can): not root, a binary of .ci/k8s.sh not built, or a Debian package
// missing.
func Missing() string {
	if os.Geteuid() != 0 {
		return "kube test cluster: needs root (kubelet, containerd, cgroups, mounts)"
	}
	var miss []string
	for _, b := range requiredBins {
		if st, err := os.Stat(filepath.Join(BinDir(), b)); err != nil || st.Size() == 0 {
			miss = append(miss, b)
		}
	}
	if len(miss) > 0 {
		return fmt.Sprintf("kube test cluster: %s not built in %s: run .ci/k8s.sh", strings.Join(miss, ", "), BinDir())
	}
	for name, p := range hostPrograms {
		if _, err := lookHost(name, p); err != nil {
			return fmt.Sprintf("kube test cluster: %s not found (apt-get install containerd runc util-linux iproute2; .ci/k8s.sh does)", name)
		}
	}
	if _, err := os.Stat(filepath.Join(cniDir, "loopback")); err != nil {
		return "kube test cluster: " + cniDir + "/loopback not found (apt-get install containernetworking-plugins; .ci/k8s.sh does)"
	}
	return ""
}

func lookHost(name, fallback string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	if _, err := os.Stat(fallback); err != nil {
		return "", err
	}
	return fallback, nil
}

// Start starts a cluster for t and stops it when t ends (Stop is
// registered with t.Cleanup). It skips t when the cluster cannot run here
// (see Missing) and fails t if a component that should start does not,
// with the tail of each component's log. It returns once the apiserver is
// ready, the controller-manager and scheduler are healthy, the real node
// and every Ready fake node are Ready, and the "default" namespace has its
// ServiceAccount and kube-root-ca.crt.
func Start(t testing.TB, o Options) *Cluster {
	t.Helper()
	if why := Missing(); why != "" {
		t.Skip(why)
	}
	if o.Registry == "" {
		t.Fatal("kube.Start: Options.Registry is required (the real node pulls its pause image from it)")
	}
	c := &Cluster{t: t, bins: BinDir(), Dir: t.TempDir(), RealNode: RealNodeName}
	t.Cleanup(c.Stop)
	began := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	if err := c.start(ctx, o); err != nil {
		t.Fatalf("kube: starting the cluster: %v\n%s", err, c.logTails())
	}
	t.Logf("kube: cluster ready in %v (apiserver %s, logs in %s)", time.Since(began).Round(time.Millisecond), c.Server, filepath.Join(c.Dir, "logs"))
	return c
}

// ports are the loopback ports of one cluster.
type ports struct {
	etcd, etcdPeer, apiserver, kcm, scheduler, kubelet, kubeletHealthz, kwok, fakeLogs int
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ps []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		ls = append(ls, l)
		ps = append(ps, l.Addr().(*net.TCPAddr).Port)
	}
	return ps, nil
}

func randomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (c *Cluster) logDir() string { return filepath.Join(c.Dir, "logs") }

// run starts one component, logging to logs/<name>.log.
func (c *Cluster) run(name string, env []string, bin string, args ...string) (*proc, error) {
	p, err := startProc(name, filepath.Join(c.logDir(), name+".log"), env, bin, args...)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	return p, nil
}

// procsError returns the exit error of any component that exited while
// nobody stopped it.
func (c *Cluster) procsError() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.procs {
		if p.exited() && !p.stopped {
			return p.exitError()
		}
	}
	return nil
}

// logTails returns the last lines of every component's log.
func (c *Cluster) logTails() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	for _, p := range c.procs {
		fmt.Fprintf(&b, "%s\n", p.tail())
	}
	return b.String()
}

// waitFor polls cond every 100ms until it is true, a component dies, or
// ctx ends; what names the wait in the error.
func (c *Cluster) waitFor(ctx context.Context, what string, cond func(context.Context) (bool, error)) error {
	var last error
	for {
		ok, err := cond(ctx)
		if ok {
			return nil
		}
		if err != nil {
			last = err
		}
		if err := c.procsError(); err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last error: %v)", what, ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// httpsOK reports whether GET url answers 200 (the server's certificate is
// not checked: these are the components' own health endpoints).
func httpsOK(ctx context.Context, url string) (bool, error) {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		Proxy: nil, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true,
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return true, nil
}

func (c *Cluster) start(ctx context.Context, o Options) error {
	step := time.Now()
	lap := func(what string) {
		c.t.Logf("kube: %s in %v", what, time.Since(step).Round(time.Millisecond))
		step = time.Now()
	}
	if err := os.MkdirAll(c.logDir(), 0o755); err != nil {
		return err
	}
	if err := sweepStale(); err != nil {
		c.t.Logf("kube: cleaning up after the clusters of crashed tests: %v", err)
	}
	pp, err := freePorts(9)
	if err != nil {
		return err
	}
	p := ports{pp[0], pp[1], pp[2], pp[3], pp[4], pp[5], pp[6], pp[7], pp[8]}
	c.Server = fmt.Sprintf("https://127.0.0.1:%d", p.apiserver)

	certs, err := c.makeCerts()
	if err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	lap("certificates")

	// etcd, then the apiserver; the real node's containerd starts meanwhile.
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", p.etcd)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", p.etcdPeer)
	if _, err := c.run("etcd", nil, filepath.Join(c.bins, "etcd"),
		"--name=kiln-test", "--data-dir="+filepath.Join(c.Dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=kiln-test="+peerURL, "--unsafe-no-fsync", "--log-level=warn",
	); err != nil {
		return err
	}
	if err := c.waitFor(ctx, "etcd", func(ctx context.Context) (bool, error) {
		return httpsOK(ctx, etcdURL+"/health")
	}); err != nil {
		return err
	}
	lap("etcd healthy")
	if err := c.startAPIServer(p, etcdURL, certs); err != nil {
		return err
	}
	node, err := c.startContainerd(ctx, o.Registry)
	if err != nil {
		return fmt.Errorf("real node: %w", err)
	}
	lap("containerd started, pause image pushed")
	if err := c.waitFor(ctx, "kube-apiserver /readyz", func(ctx context.Context) (bool, error) {
		b, err := c.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err == nil && string(b) == "ok", err
	}); err != nil {
		return err
	}
	lap("kube-apiserver ready")

	if err := c.createFakeNodes(ctx, o.FakeNodes); err != nil {
		return err
	}
	if err := c.startControlPlane(p, certs); err != nil {
		return err
	}
	if err := c.startKubelet(ctx, node, p, certs); err != nil {
		return fmt.Errorf("real node: %w", err)
	}
	if err := c.startKwok(p, certs, o.FakePodsWaitForRelease); err != nil {
		return err
	}
	for _, hc := range []struct{ name, url string }{
		{"kube-controller-manager", fmt.Sprintf("https://127.0.0.1:%d/healthz", p.kcm)},
		{"kube-scheduler", fmt.Sprintf("https://127.0.0.1:%d/healthz", p.scheduler)},
	} {
		if err := c.waitFor(ctx, hc.name+" /healthz", func(ctx context.Context) (bool, error) { return httpsOK(ctx, hc.url) }); err != nil {
			return err
		}
	}
	lap("controller-manager and scheduler healthy")
	ready := []string{c.RealNode}
	for _, n := range o.FakeNodes {
		if n.Ready {
			ready = append(ready, n.Name)
		}
	}
	for _, n := range ready {
		// Ready, and the node lifecycle controller has seen it: the
		// not-ready taint set at registration is gone.
		if err := c.waitFor(ctx, "node "+n+" Ready and untainted", func(ctx context.Context) (bool, error) {
			node, err := c.Client.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			for _, t := range node.Spec.Taints {
				if t.Key == corev1.TaintNodeNotReady || t.Key == corev1.TaintNodeUnreachable {
					return false, fmt.Errorf("node %s: taint %s", n, t.ToString())
				}
			}
			return NodeReady(node) == corev1.ConditionTrue, nil
		}); err != nil {
			return err
		}
	}
	lap("nodes " + strings.Join(ready, ", ") + " Ready")
	if err := c.waitNamespace(ctx, "default"); err != nil {
		return err
	}
	lap("namespace default has its ServiceAccount and kube-root-ca.crt")
	return nil
}

// NodeReady returns the status of node's Ready condition ("" if none).
func NodeReady(node *corev1.Node) corev1.ConditionStatus {
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status
		}
	}
	return ""
}

// waitNamespace waits until the controllers have given namespace its
// "default" ServiceAccount and the kube-root-ca.crt ConfigMap: a pod
// created before fails admission, or waits for its token volume.
func (c *Cluster) waitNamespace(ctx context.Context, namespace string) error {
	return c.waitFor(ctx, "ServiceAccount and kube-root-ca.crt of namespace "+namespace, func(ctx context.Context) (bool, error) {
		if _, err := c.Client.CoreV1().ServiceAccounts(namespace).Get(ctx, "default", metav1.GetOptions{}); err != nil {
			return false, err
		}
		_, err := c.Client.CoreV1().ConfigMaps(namespace).Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
		return err == nil, err
	})
}

// CreateNamespace creates namespace and waits until pods can run in it (its
// default ServiceAccount and kube-root-ca.crt exist).
func (c *Cluster) CreateNamespace(t testing.TB, namespace string) {
	t.Helper()
	_, err := c.Client.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("kube: creating namespace %s: %v", namespace, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := c.waitNamespace(ctx, namespace); err != nil {
		t.Fatalf("kube: %v", err)
	}
}

// clusterCerts are the certificates of one cluster.
type clusterCerts struct {
	apiserver, admin, kubeletClient, kcm, scheduler, node, nodeServing, kwok, fakeNodesServing certPair
	saPub, saKey                                                                               string
}

func (c *Cluster) makeCerts() (*clusterCerts, error) {
	p, err := newPKI(filepath.Join(c.Dir, "pki"))
	if err != nil {
		return nil, err
	}
	c.pki, c.CAPEM = p, p.CAPEM
	var cc clusterCerts
	for _, x := range []struct {
		out   *certPair
		name  string
		cn    string
		orgs  []string
		hosts []string
	}{
		{&cc.apiserver, "apiserver", "kube-apiserver", nil, []string{"127.0.0.1", "localhost", "kubernetes", "kubernetes.default",
			"kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "10.96.0.1"}},
		{&cc.admin, "admin", "kiln-test-admin", []string{"system:masters"}, nil},
		{&cc.kubeletClient, "apiserver-kubelet-client", "kube-apiserver-kubelet-client", []string{"system:masters"}, nil},
		{&cc.kcm, "controller-manager", "system:kube-controller-manager", nil, nil},
		{&cc.scheduler, "scheduler", "system:kube-scheduler", nil, nil},
		{&cc.node, "kubelet", "system:node:" + RealNodeName, []string{"system:nodes"}, nil},
		{&cc.nodeServing, "kubelet-serving", RealNodeName, nil, []string{RealNodeName, "127.0.0.1"}},
		{&cc.kwok, "kwok", "kwok", []string{"system:masters"}, nil},
		{&cc.fakeNodesServing, "fake-nodes-serving", "localhost", nil, []string{"localhost", "127.0.0.1"}},
	} {
		if *x.out, err = p.issue(x.name, x.cn, x.orgs, x.hosts...); err != nil {
			return nil, err
		}
	}
	if cc.saPub, cc.saKey, err = p.serviceAccountKeys(); err != nil {
		return nil, err
	}
	c.Kubeconfig = filepath.Join(c.Dir, "admin.kubeconfig")
	if err := writeKubeconfig(c.Kubeconfig, kubeconfig(c.Server, c.CAPEM, "kiln-test-admin", &cc.admin, "")); err != nil {
		return nil, err
	}
	if c.RestConfig, err = clientcmd.BuildConfigFromFlags("", c.Kubeconfig); err != nil {
		return nil, err
	}
	c.RestConfig.QPS, c.RestConfig.Burst = 100, 200
	if c.Client, err = kubernetes.NewForConfig(c.RestConfig); err != nil {
		return nil, err
	}
	return &cc, nil
}

// componentKubeconfig writes name.kubeconfig for a component's identity.
func (c *Cluster) componentKubeconfig(name string, cert *certPair) (string, error) {
	path := filepath.Join(c.Dir, name+".kubeconfig")
	return path, writeKubeconfig(path, kubeconfig(c.Server, c.CAPEM, name, cert, ""))
}

func (c *Cluster) startAPIServer(p ports, etcdURL string, cc *clusterCerts) error {
	_, err := c.run("kube-apiserver", nil, filepath.Join(c.bins, "kube-apiserver"),
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", p.apiserver),
		"--tls-cert-file="+cc.apiserver.CertFile, "--tls-private-key-file="+cc.apiserver.KeyFile,
		"--client-ca-file="+c.pki.CAFile,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+cc.saPub, "--service-account-signing-key-file="+cc.saKey,
		"--authorization-mode=Node,RBAC",
		"--endpoint-reconciler-type=none",
		"--service-cluster-ip-range="+ServiceCIDR,
		"--allow-privileged=true",
		"--kubelet-client-certificate="+cc.kubeletClient.CertFile, "--kubelet-client-key="+cc.kubeletClient.KeyFile,
		"--kubelet-certificate-authority="+c.pki.CAFile,
		"--kubelet-preferred-address-types=Hostname",
		"--profiling=false",
		"--v=1",
	)
	return err
}

func (c *Cluster) startControlPlane(p ports, cc *clusterCerts) error {
	kcm, err := c.componentKubeconfig("controller-manager", &cc.kcm)
	if err != nil {
		return err
	}
	sched, err := c.componentKubeconfig("scheduler", &cc.scheduler)
	if err != nil {
		return err
	}
	if _, err := c.run("kube-controller-manager", nil, filepath.Join(c.bins, "kube-controller-manager"),
		"--kubeconfig="+kcm,
		"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", p.kcm),
		"--leader-elect=false",
		"--use-service-account-credentials=true",
		"--service-account-private-key-file="+cc.saKey,
		"--root-ca-file="+c.pki.CAFile,
		"--flex-volume-plugin-dir="+filepath.Join(c.Dir, "flexvolume"), // not /usr/libexec/kubernetes
		"--cluster-name=kiln-test",
		"--v=1",
	); err != nil {
		return err
	}
	_, err = c.run("kube-scheduler", nil, filepath.Join(c.bins, "kube-scheduler"),
		"--kubeconfig="+sched,
		"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", p.scheduler),
		"--leader-elect=false",
		"--v=1",
	)
	return err
}

// Stop stops every component (the kubelet and kwok first, the apiserver
// and etcd last), kills what is left in the real node's cgroups
// (containers, containerd shims) and removes them, and removes NodeDir.
// If the test failed, or a component had died on its own, it logs the
// tail of each component's log. Start registers it with t.Cleanup; calling
// it again does nothing.
func (c *Cluster) Stop() {
	c.stopOnce.Do(c.stop)
}

func (c *Cluster) stop() {
	began := time.Now()
	defer func() { c.t.Logf("kube: cluster stopped in %v", time.Since(began).Round(time.Millisecond)) }()
	if err := c.procsError(); err != nil {
		c.t.Errorf("kube: a component died during the test: %v", err)
	} else if c.t.Failed() {
		c.t.Logf("kube: test failed; component logs:\n%s", c.logTails())
	}
	c.mu.Lock()
	procs := append([]*proc(nil), c.procs...)
	c.mu.Unlock()
	// Reverse start order: kwok, kubelet, scheduler, controller-manager,
	// containerd, apiserver, etcd.
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].stop(10 * time.Second)
	}
	if c.fakeLogs != nil {
		_ = c.fakeLogs.Close()
	}
	if c.cgroups != nil {
		if err := c.cgroups.destroy(); err != nil {
			c.t.Errorf("kube: cleaning up the real node: %v", err)
		}
	}
	if c.NodeDir != "" {
		if err := os.RemoveAll(c.NodeDir); err != nil && !errors.Is(err, os.ErrNotExist) {
			c.t.Errorf("kube: removing %s: %v", c.NodeDir, err)
		}
	}
}

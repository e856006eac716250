package test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	kubeharness "kiln/test/harness/kube"
)

// fakeNodeAgent does, on this machine, what the kubelet of a kwok fake node
// would do with a kiln pod: it runs the pod's init containers and its build
// container as kiln processes (their arguments unchanged but for the paths
// of the pod's volumes, and container isolation, which needs the pod), then
// hands kwok the exit code and the termination message, which complete the
// pod. A COPY-only or $BUILDPLATFORM build of linux/arm64 runs here without
// emulation, as it would on an arm64 node.
type fakeNodeAgent struct {
	t     *testing.T
	cs    kubernetes.Interface
	nodes map[string]bool // the fake nodes' names
	mu    sync.Mutex
	seen  map[types.UID]bool
	ran   []string // "pod on node"
	wg    sync.WaitGroup
}

func startFakeNodeAgent(t *testing.T, cs kubernetes.Interface, namespace string, nodes ...string) *fakeNodeAgent {
	a := &fakeNodeAgent{t: t, cs: cs, nodes: map[string]bool{}, seen: map[types.UID]bool{}}
	for _, n := range nodes {
		a.nodes[n] = true
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			a.poll(ctx, namespace)
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done; a.wg.Wait() })
	return a
}

func (a *fakeNodeAgent) poll(ctx context.Context, namespace string) {
	pods, err := a.cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	for i := range pods.Items {
		pod := pods.Items[i]
		if !a.nodes[pod.Spec.NodeName] || pod.DeletionTimestamp != nil {
			continue
		}
		a.mu.Lock()
		if a.seen[pod.UID] {
			a.mu.Unlock()
			continue
		}
		a.seen[pod.UID] = true
		a.ran = append(a.ran, pod.Name+" on "+pod.Spec.NodeName)
		a.mu.Unlock()
		a.wg.Add(1)
		go func() { defer a.wg.Done(); a.run(ctx, &pod) }()
	}
}

// run executes the pod's containers and reports how they ended.
func (a *fakeNodeAgent) run(ctx context.Context, pod *corev1.Pod) {
	dir, err := os.MkdirTemp("", "kiln-fake-node-")
	if err != nil {
		a.t.Errorf("fake node agent: %v", err)
		return
	}
	defer os.RemoveAll(dir)
	paths := map[string]string{}
	for _, p := range []string{kubeharnessCache, "/kiln/work", "/workspace"} {
		paths[p] = filepath.Join(dir, filepath.Base(p))
		_ = os.MkdirAll(paths[p], 0o755)
	}
	paths["/dev/termination-log"] = filepath.Join(dir, "termination-log")
	code := 0
	for _, c := range append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
		args := agentArgs(c.Args, paths)
		cmd := exec.CommandContext(ctx, kilnBin, args...)
		cmd.Env = append(baseEnv(), "TMPDIR="+dir)
		out, err := cmd.CombinedOutput()
		a.t.Logf("fake node %s, pod %s, container %s: kiln %v: %v\n%s", pod.Spec.NodeName, pod.Name, c.Name, args, err, out)
		if err != nil {
			code = exitCode(err)
			break
		}
	}
	msg, _ := os.ReadFile(paths["/dev/termination-log"])
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{
		kubeharness.TerminationMessageAnnotation: string(msg),
		kubeharness.ExitCodeAnnotation:           strconv.Itoa(code),
		kubeharness.ReleaseAnnotation:            "true",
	}}})
	if _, err := a.cs.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil && ctx.Err() == nil {
		a.t.Errorf("fake node agent: reporting pod %s: %v", pod.Name, err)
	}
}

const kubeharnessCache = "/cache"

// agentArgs maps the pod's paths to the agent's folders and drops
// container isolation (this is no pod).
func agentArgs(args []string, paths map[string]string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		if args[i] == "--isolation" && i+1 < len(args) {
			i++
			continue
		}
		if p, ok := paths[args[i]]; ok {
			out = append(out, p)
			continue
		}
		if p, ok := paths[kubeharnessCache]; ok && strings.HasPrefix(args[i], kubeharnessCache+"/") {
			out = append(out, p+strings.TrimPrefix(args[i], kubeharnessCache))
			continue
		}
		out = append(out, args[i])
	}
	return out
}

func (a *fakeNodeAgent) pods() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.ran...)
}

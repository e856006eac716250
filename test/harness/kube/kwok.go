//go:build linux

package kube

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Annotations that drive how a Job's pod on a fake node ends (kwok runs
// no container: these stand for what the container would have done).
const (
	// TerminationMessageAnnotation becomes the terminated state's message
	// of each of the pod's containers (there is no /dev/termination-log).
	TerminationMessageAnnotation = "kiln.test/kwok-termination-message"
	// ExitCodeAnnotation becomes the containers' exit code (default "0");
	// anything but "0" makes the pod Failed (reason Error), so the Job's
	// backoffLimit applies.
	ExitCodeAnnotation = "kiln.test/kwok-exit-code"
	// HoldAnnotation "true" keeps the pod Running until its
	// ReleaseAnnotation is "true" (Options.FakePodsWaitForRelease does
	// that for every pod).
	HoldAnnotation = "kiln.test/kwok-hold"
	// ReleaseAnnotation "true" ends a held pod: set it in the same patch
	// as the exit code and termination message, e.g. once a test agent
	// has done the pod's work itself.
	ReleaseAnnotation = "kiln.test/kwok-release"
)

// podCompleteTemplate is the status a Job's pod on a fake node ends with:
// each container terminated with the pod's ExitCodeAnnotation and
// TerminationMessageAnnotation, the pod Succeeded or Failed.
const podCompleteTemplate = `{{ $now := Now }}
      {{ $ann := .metadata.annotations | default dict }}
      {{ $code := index $ann "` + ExitCodeAnnotation + `" | default "0" }}
      {{ $msg := index $ann "` + TerminationMessageAnnotation + `" | default "" }}
      containerStatuses:
      {{ range $index, $item := .spec.containers }}
      - image: {{ $item.image | Quote }}
        name: {{ $item.name | Quote }}
        ready: false
        restartCount: 0
        started: false
        state:
          terminated:
            exitCode: {{ $code }}
            finishedAt: {{ $now | Quote }}
            {{ if eq $code "0" }}
            reason: Completed
            {{ else }}
            reason: Error
            {{ end }}
            {{ with $msg }}
            message: {{ . | Quote }}
            {{ end }}
            startedAt: {{ $now | Quote }}
      {{ end }}
      {{ if eq $code "0" }}
      phase: Succeeded
      {{ else }}
      phase: Failed
      {{ end }}`

// podCompleteStages replace kwok's pod-complete stage: a Job's pod that
// kwok made Running ends with podCompleteTemplate at once ("pod-complete",
// unless held) or once released ("pod-release").
func podCompleteStages(waitForRelease bool) []string {
	stage := func(name, extra string) string {
		return `apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: ` + name + `
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values:
      - 'Running'
    - key: '.metadata.ownerReferences.[].kind'
      operator: 'In'
      values:
      - 'Job'
` + extra + `  next:
    statusTemplate: |
      ` + podCompleteTemplate + `
`
	}
	release := stage("pod-release", `    - key: '.metadata.annotations["`+ReleaseAnnotation+`"]'
      operator: 'In'
      values:
      - 'true'
`)
	if waitForRelease {
		return []string{release}
	}
	return []string{release, stage("pod-complete", `    - key: '.metadata.annotations["`+HoldAnnotation+`"]'
      operator: 'NotIn'
      values:
      - 'true'
`)}
}

// fakeNodeObject returns the Node to create for n. A Ready node is
// annotated for kwok, which makes it Ready and keeps its lease; a NotReady
// one is not (kwok would make it Ready) and starts NotReady.
func fakeNodeObject(n FakeNode) *corev1.Node {
	labels := map[string]string{
		corev1.LabelArchStable: n.Arch,
		corev1.LabelOSStable:   "linux",
		corev1.LabelHostname:   n.Name,
		"type":                 "kwok",
	}
	for k, v := range n.Labels {
		labels[k] = v
	}
	ann := map[string]string{FakeNodeAnnotation: "fake"}
	if !n.Ready {
		ann[FakeNodeAnnotation] = "fake-not-ready" // not managed by kwok
	}
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("32"),
		corev1.ResourceMemory: resource.MustParse("128Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: labels, Annotations: ann},
		Spec:       corev1.NodeSpec{Taints: n.Taints},
		Status: corev1.NodeStatus{
			Capacity:    capacity,
			Allocatable: capacity,
			NodeInfo:    corev1.NodeSystemInfo{Architecture: n.Arch, OperatingSystem: "linux", KubeletVersion: "kwok-" + Version},
			// The apiserver reaches nodes by their Hostname address (see
			// RealNodeName), at the port kwok gives (the fake log server).
			Addresses: []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: "localhost"}, {Type: corev1.NodeInternalIP, Address: "127.0.0.1"}},
		},
	}
	if !n.Ready {
		now := metav1.Now()
		node.Status.Conditions = []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionFalse, Reason: "KubeletNotReady",
			Message: "kiln test cluster: a fake node created NotReady", LastHeartbeatTime: now, LastTransitionTime: now,
		}}
	}
	return node
}

func (c *Cluster) createFakeNodes(ctx context.Context, nodes []FakeNode) error {
	for _, n := range nodes {
		if n.Name == "" || n.Arch == "" || n.Name == c.RealNode {
			return fmt.Errorf("fake node %+v: needs a Name (not %q) and an Arch", n, c.RealNode)
		}
		created, err := c.Client.CoreV1().Nodes().Create(ctx, fakeNodeObject(n), metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("creating fake node %s: %w", n.Name, err)
		}
		// The status given at creation is kept, but set it again through
		// the status subresource in case a version drops it.
		want := fakeNodeObject(n).Status
		if len(created.Status.Conditions) != len(want.Conditions) || len(created.Status.Addresses) == 0 {
			created.Status = want
			if _, err := c.Client.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
				return fmt.Errorf("setting the status of fake node %s: %w", n.Name, err)
			}
		}
	}
	return nil
}

// startKwok starts kwok with kwok's own node-initialize,
// node-heartbeat-with-lease, pod-ready and pod-delete stages (from the
// cache) and podCompleteStages, managing the nodes annotated
// kwok.x-k8s.io/node=fake.
func (c *Cluster) startKwok(p ports, cc *clusterCerts, waitForRelease bool) error {
	if err := c.startFakeLogServer(p.fakeLogs, cc.fakeNodesServing); err != nil {
		return err
	}
	kc, err := c.componentKubeconfig("kwok", &cc.kwok)
	if err != nil {
		return err
	}
	var stages []string
	for _, f := range []string{"node-initialize.yaml", "node-heartbeat-with-lease.yaml", "pod-ready.yaml", "pod-delete.yaml"} {
		b, err := os.ReadFile(filepath.Join(c.bins, f))
		if err != nil {
			return err
		}
		stages = append(stages, string(b))
	}
	dir := filepath.Join(c.Dir, "kwok")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	stages = append(stages, podCompleteStages(waitForRelease)...)
	cfg := filepath.Join(dir, "stages.yaml")
	if err := os.WriteFile(cfg, []byte(strings.Join(stages, "\n---\n")), 0o644); err != nil {
		return err
	}
	_, err = c.run("kwok", []string{"HOME=" + dir}, filepath.Join(c.bins, "kwok"),
		"--kubeconfig="+kc,
		"--config="+cfg,
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector="+FakeNodeAnnotation+"=fake",
		"--node-lease-duration-seconds=40",
		"--cidr=10.244.128.0/20",
		"--node-ip=127.0.0.1",
		// The fake nodes' kubelet port: the fake log server's.
		fmt.Sprintf("--node-port=%d", p.fakeLogs),
		// kwok's own server (healthz, metrics, its unused log server),
		// on loopback: without this flag it listens on 0.0.0.0:<node port>.
		fmt.Sprintf("--server-address=127.0.0.1:%d", p.kwok),
	)
	return err
}

//go:build linux

package kube_test

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"kiln/test/harness"
	"kiln/test/harness/kube"
)

// One cluster serves every subtest (they run in parallel): starting one
// takes ~10 s.
func TestCluster(t *testing.T) {
	if why := kube.Missing(); why != "" {
		t.Skip(why)
	}
	began := time.Now()
	reg := harness.NewRegistry(t)
	busybox, err := kube.PushBusybox(t.Context(), reg.Addr)
	if err != nil {
		t.Fatal(err)
	}
	c := kube.Start(t, kube.Options{
		Registry: reg.Addr,
		FakeNodes: []kube.FakeNode{
			{Name: "arm-ready", Arch: "arm64", Ready: true, Labels: map[string]string{"kiln.test/pool": "builders"}},
			{Name: "arm-down", Arch: "arm64", Ready: false},
			{Name: "amd-fake", Arch: "amd64", Ready: true, Taints: []corev1.Taint{{Key: kube.FakeTaintKey, Value: "fake", Effect: corev1.TaintEffectNoSchedule}}},
		},
	})
	t.Logf("registry, busybox image and cluster ready in %v", time.Since(began).Round(time.Millisecond))

	t.Run("Nodes", func(t *testing.T) {
		t.Parallel()
		testNodes(t, c)
	})
	t.Run("RealNodeJobStreamsLogs", func(t *testing.T) {
		t.Parallel()
		testRealNodeJob(t, c, busybox)
	})
	t.Run("Arm64JobOnFakeNode", func(t *testing.T) {
		t.Parallel()
		testFakeNodeJob(t, c, busybox)
	})
	t.Run("DeleteJobBackground", func(t *testing.T) {
		t.Parallel()
		testDeleteJob(t, c, busybox)
	})
	t.Run("PodNetwork", func(t *testing.T) {
		t.Parallel()
		testPodNetwork(t, c, busybox)
	})
	t.Run("ServiceAccountRBAC", func(t *testing.T) {
		t.Parallel()
		testServiceAccountRBAC(t, c)
	})
}

func testNodes(t *testing.T, c *kube.Cluster) {
	nodes, err := c.Client.CoreV1().Nodes().List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]corev1.Node{}
	for _, n := range nodes.Items {
		got[n.Name] = n
	}
	want := []struct {
		name, arch string
		ready      bool
	}{{c.RealNode, "amd64", true}, {"arm-ready", "arm64", true}, {"arm-down", "arm64", false}, {"amd-fake", "amd64", true}}
	if len(got) != len(want) {
		t.Errorf("nodes %v, want %d", slices.Sorted(maps.Keys(got)), len(want))
	}
	for _, w := range want {
		n, ok := got[w.name]
		if !ok {
			t.Errorf("node %s missing", w.name)
			continue
		}
		if a := n.Labels[corev1.LabelArchStable]; a != w.arch {
			t.Errorf("node %s: arch %q, want %q", w.name, a, w.arch)
		}
		if o := n.Labels[corev1.LabelOSStable]; o != "linux" {
			t.Errorf("node %s: os %q, want linux", w.name, o)
		}
		if r := kube.NodeReady(&n) == corev1.ConditionTrue; r != w.ready {
			t.Errorf("node %s: Ready %v (%q), want %v", w.name, r, kube.NodeReady(&n), w.ready)
		}
	}
	real := got[c.RealNode]
	if len(real.Spec.Taints) != 0 {
		t.Errorf("real node taints: %v, want none", real.Spec.Taints)
	}
	if arm := got["arm-ready"]; len(arm.Spec.Taints) != 0 || arm.Labels["kiln.test/pool"] != "builders" {
		t.Errorf("arm-ready: taints %v labels %v, want no taint and kiln.test/pool=builders", arm.Spec.Taints, arm.Labels)
	}
	t.Logf("real node %s: kubelet %s, runtime %s, addresses %v", real.Name, real.Status.NodeInfo.KubeletVersion,
		real.Status.NodeInfo.ContainerRuntimeVersion, real.Status.Addresses)
}

// job returns a Job of one pod running sh -c script in image on a node of
// arch, with hostNetwork on the real node.
func job(name, image, arch, script string) *batchv1.Job {
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr.To(int32(0)),
			Template: corev1.PodTemplateSpec{
				Spec: corev1.PodSpec{
					RestartPolicy:                 corev1.RestartPolicyNever,
					NodeSelector:                  map[string]string{corev1.LabelArchStable: arch},
					HostNetwork:                   arch == "amd64",
					TerminationGracePeriodSeconds: ptr.To(int64(2)),
					Containers: []corev1.Container{{
						Name:                     "build",
						Image:                    image,
						Command:                  []string{"sh", "-c", script},
						TerminationMessagePolicy: corev1.TerminationMessageReadFile,
					}},
				},
			},
		},
	}
}

// jobPod waits for the (single) pod of a Job to exist and returns it.
func jobPod(ctx context.Context, t *testing.T, c *kube.Cluster, ns, jobName string, done func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	for {
		pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "batch.kubernetes.io/job-name=" + jobName})
		if err != nil {
			t.Fatal(err)
		}
		if len(pods.Items) > 0 && done(&pods.Items[0]) {
			return &pods.Items[0]
		}
		select {
		case <-ctx.Done():
			t.Fatalf("pod of job %s/%s: %v (pods: %+v)", ns, jobName, ctx.Err(), pods.Items)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitJob waits until the Job has condition cond (Complete or Failed).
func waitJob(ctx context.Context, t *testing.T, c *kube.Cluster, ns, name string, cond batchv1.JobConditionType) *batchv1.Job {
	t.Helper()
	for {
		j, err := c.Client.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, jc := range j.Status.Conditions {
			if jc.Status != corev1.ConditionTrue {
				continue
			}
			if jc.Type == cond {
				return j
			}
			if jc.Type == batchv1.JobComplete || jc.Type == batchv1.JobFailed {
				t.Fatalf("job %s/%s: %s (%s), want %s", ns, name, jc.Type, jc.Message, cond)
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("job %s/%s: %v waiting for %s; status %+v", ns, name, ctx.Err(), cond, j.Status)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func terminated(p *corev1.Pod) *corev1.ContainerStateTerminated {
	if len(p.Status.ContainerStatuses) == 0 {
		return nil
	}
	return p.Status.ContainerStatuses[0].State.Terminated
}

func testRealNodeJob(t *testing.T, c *kube.Cluster, busybox string) {
	const ns = "real"
	c.CreateNamespace(t, ns)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	const result = `{"digest":"sha256:0123","platform":"linux/amd64"}`
	script := `for i in 1 2 3 4 5 6; do echo "line $i"; sleep 0.5; done; printf '%s' '` + result + `' > /dev/termination-log`
	created := time.Now()
	if _, err := c.Client.BatchV1().Jobs(ns).Create(ctx, job("echo", busybox, "amd64", script), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := jobPod(ctx, t, c, ns, "echo", func(p *corev1.Pod) bool { return p.Spec.NodeName != "" })
	if pod.Spec.NodeName != c.RealNode {
		t.Fatalf("pod on node %q, want the real node %q", pod.Spec.NodeName, c.RealNode)
	}
	// Follow the logs as soon as the container has started: GetLogs fails
	// (400, ContainerCreating) before.
	var lines []string
	var first, end time.Time
	for {
		stream, err := c.Client.CoreV1().Pods(ns).GetLogs(pod.Name, &corev1.PodLogOptions{Follow: true}).Stream(ctx)
		if err != nil {
			if ctx.Err() != nil {
				t.Fatalf("logs of %s: %v", pod.Name, err)
			}
			time.Sleep(50 * time.Millisecond)
			continue
		}
		sc := bufio.NewScanner(stream)
		for sc.Scan() {
			if first.IsZero() {
				first = time.Now()
			}
			lines = append(lines, sc.Text())
		}
		stream.Close()
		if err := sc.Err(); err != nil {
			t.Fatalf("reading logs: %v", err)
		}
		end = time.Now()
		break
	}
	want := []string{"line 1", "line 2", "line 3", "line 4", "line 5", "line 6"}
	if !slices.Equal(lines, want) {
		t.Errorf("streamed logs %q, want %q", lines, want)
	}
	// The lines are 0.5 s apart: the stream followed a running container.
	if end.Sub(first) < 2*time.Second {
		t.Errorf("the log stream lasted %v after its first line, want >= 2s (not followed while running?)", end.Sub(first))
	}
	t.Logf("job created → first log line in %v; stream ended %v later", first.Sub(created).Round(time.Millisecond), end.Sub(first).Round(time.Millisecond))
	waitJob(ctx, t, c, ns, "echo", batchv1.JobComplete)
	t.Logf("job created → Complete in %v", time.Since(created).Round(time.Millisecond))
	pod = jobPod(ctx, t, c, ns, "echo", func(p *corev1.Pod) bool { return terminated(p) != nil })
	if term := terminated(pod); term.ExitCode != 0 || term.Message != result {
		t.Errorf("terminated: exit %d message %q, want 0 and %q", term.ExitCode, term.Message, result)
	}
}

func testFakeNodeJob(t *testing.T, c *kube.Cluster, busybox string) {
	const ns = "fake"
	c.CreateNamespace(t, ns)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	const result = `{"digest":"sha256:4567","platform":"linux/arm64"}`
	// Three pods, so that a NotReady node would have had its chances.
	ok := job("arm", busybox, "arm64", "exit 1") // kwok runs nothing: the script is never run
	ok.Spec.Completions, ok.Spec.Parallelism = ptr.To(int32(3)), ptr.To(int32(3))
	ok.Spec.Template.Annotations = map[string]string{kube.TerminationMessageAnnotation: result, kube.LogAnnotation: "step 1\nstep 2"}
	bad := job("arm-fails", busybox, "arm64", "true")
	bad.Spec.Template.Annotations = map[string]string{kube.ExitCodeAnnotation: "3", kube.TerminationMessageAnnotation: "boom"}
	// A Job removed by the TTL-after-finished controller once complete.
	ttl := job("arm-ttl", busybox, "arm64", "true")
	ttl.Spec.TTLSecondsAfterFinished = ptr.To(int32(0))
	created := time.Now()
	// A held pod stays Running until released with its result.
	held := job("arm-held", busybox, "arm64", "true")
	held.Spec.Template.Annotations = map[string]string{kube.HoldAnnotation: "true"}
	for _, j := range []*batchv1.Job{ok, bad, ttl, held} {
		if _, err := c.Client.BatchV1().Jobs(ns).Create(ctx, j, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitJob(ctx, t, c, ns, "arm", batchv1.JobComplete)
	t.Logf("3-pod arm64 job created → Complete in %v", time.Since(created).Round(time.Millisecond))
	pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "batch.kubernetes.io/job-name=arm"})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 3 {
		t.Errorf("%d pods, want 3", len(pods.Items))
	}
	for _, p := range pods.Items {
		if p.Spec.NodeName != "arm-ready" {
			t.Errorf("pod %s on node %q, want arm-ready", p.Name, p.Spec.NodeName)
		}
		if term := terminated(&p); term == nil || term.ExitCode != 0 || term.Message != result {
			t.Errorf("pod %s: terminated %+v, want exit 0 and message %q", p.Name, term, result)
		}
	}
	waitJob(ctx, t, c, ns, "arm-fails", batchv1.JobFailed)
	p := jobPod(ctx, t, c, ns, "arm-fails", func(p *corev1.Pod) bool { return terminated(p) != nil })
	// Logs, followed or not, of pods on fake nodes: the LogAnnotation, or
	// FakePodLog; the follow ends.
	for _, follow := range []bool{false, true} {
		for pod, want := range map[string]string{pods.Items[0].Name: "step 1\nstep 2\n", p.Name: kube.FakePodLog + "\n"} {
			b, err := c.Client.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Follow: follow}).DoRaw(ctx)
			if err != nil || string(b) != want {
				t.Errorf("logs (follow %v) of pod %s on a fake node: %q, %v; want %q", follow, pod, b, err, want)
			}
		}
	}
	if term := terminated(p); term.ExitCode != 3 || term.Message != "boom" || p.Status.Phase != corev1.PodFailed {
		t.Errorf("failing pod: phase %s terminated %+v, want Failed, exit 3, message boom", p.Status.Phase, term)
	}
	for {
		_, err := c.Client.BatchV1().Jobs(ns).Get(ctx, "arm-ttl", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("job arm-ttl (ttlSecondsAfterFinished 0) still there: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	hp := jobPod(ctx, t, c, ns, "arm-held", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	time.Sleep(time.Second) // the other jobs have long completed: this one waits
	if hp, err = c.Client.CoreV1().Pods(ns).Get(ctx, hp.Name, metav1.GetOptions{}); err != nil || hp.Status.Phase != corev1.PodRunning {
		t.Fatalf("held pod: %v, phase %s; want Running", err, hp.Status.Phase)
	}
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:"0",%q:%q,%q:"true"}}}`,
		kube.ExitCodeAnnotation, kube.TerminationMessageAnnotation, result, kube.ReleaseAnnotation)
	if _, err := c.Client.CoreV1().Pods(ns).Patch(ctx, hp.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitJob(ctx, t, c, ns, "arm-held", batchv1.JobComplete)
	hp = jobPod(ctx, t, c, ns, "arm-held", func(p *corev1.Pod) bool { return terminated(p) != nil })
	if term := terminated(hp); term.ExitCode != 0 || term.Message != result {
		t.Errorf("released pod: terminated %+v, want exit 0 and message %q", term, result)
	}
	all, err := c.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=arm-down"})
	if err != nil {
		t.Fatal(err)
	}
	if len(all.Items) != 0 {
		t.Errorf("%d pods on the NotReady node arm-down", len(all.Items))
	}
}

func testDeleteJob(t *testing.T, c *kube.Cluster, busybox string) {
	const ns = "delete"
	c.CreateNamespace(t, ns)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	if _, err := c.Client.BatchV1().Jobs(ns).Create(ctx, job("sleeper", busybox, "amd64", "sleep 3600"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := jobPod(ctx, t, c, ns, "sleeper", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	deleted := time.Now()
	if err := c.Client.BatchV1().Jobs(ns).Delete(ctx, "sleeper", metav1.DeleteOptions{
		PropagationPolicy: ptr.To(metav1.DeletePropagationBackground),
	}); err != nil {
		t.Fatal(err)
	}
	for {
		_, err := c.Client.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("pod %s still there after its Job was deleted: %v", pod.Name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("job deleted (Background) → its running pod gone in %v", time.Since(deleted).Round(time.Millisecond))
}

// testPodNetwork runs a pod without hostNetwork on the real node: it gets
// an address of kube.PodCIDR on its eth0.
func testPodNetwork(t *testing.T, c *kube.Cluster, busybox string) {
	const ns = "net"
	c.CreateNamespace(t, ns)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	j := job("ip", busybox, "amd64", "ip -4 -o addr show dev eth0")
	j.Spec.Template.Spec.HostNetwork = false
	if _, err := c.Client.BatchV1().Jobs(ns).Create(ctx, j, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitJob(ctx, t, c, ns, "ip", batchv1.JobComplete)
	pod := jobPod(ctx, t, c, ns, "ip", func(p *corev1.Pod) bool { return p.Status.PodIP != "" })
	_, cidr, _ := net.ParseCIDR(kube.PodCIDR)
	if ip := net.ParseIP(pod.Status.PodIP); pod.Spec.NodeName != c.RealNode || !cidr.Contains(ip) {
		t.Errorf("pod on %q with IP %q, want the real node and an IP in %s", pod.Spec.NodeName, pod.Status.PodIP, kube.PodCIDR)
	}
	b, err := c.Client.CoreV1().Pods(ns).GetLogs(pod.Name, &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil || !strings.Contains(string(b), " inet "+pod.Status.PodIP+"/32 ") {
		t.Errorf("eth0 in the pod: %q, %v; want %s/32", b, err, pod.Status.PodIP)
	}
}

func testServiceAccountRBAC(t *testing.T, c *kube.Cluster) {
	const ns = "rbac"
	c.CreateNamespace(t, ns)
	ctx := t.Context()
	if _, err := c.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "builder"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", c.ServiceAccountKubeconfig(t, ns, "builder"))
	if err != nil {
		t.Fatal(err)
	}
	sa, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	canCreateJobs := func() bool {
		t.Helper()
		r, err := sa.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: ns, Verb: "create", Group: "batch", Resource: "jobs",
			}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("SelfSubjectAccessReview: %v", err)
		}
		return r.Status.Allowed
	}
	j := job("nope", "example.invalid/x", "arm64", "true")
	_, err = sa.BatchV1().Jobs(ns).Create(ctx, j, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("creating a job without RBAC: %v, want 403 Forbidden", err)
	} else if !strings.Contains(err.Error(), "system:serviceaccount:rbac:builder") {
		t.Errorf("403 does not name the ServiceAccount: %v", err)
	}
	if canCreateJobs() {
		t.Error("SelfSubjectAccessReview: allowed to create jobs without RBAC")
	}
	// The control: a Role and its binding make both pass.
	if _, err := c.Client.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "jobs"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"batch"}, Resources: []string{"jobs"}, Verbs: []string{"create", "get"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "jobs"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "jobs"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "builder", Namespace: ns}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second) // RBAC changes reach the authorizer through a watch
	for !canCreateJobs() {
		if time.Now().After(deadline) {
			t.Fatal("SelfSubjectAccessReview: still not allowed after the RoleBinding")
		}
		time.Sleep(100 * time.Millisecond)
	}
	j.Spec.Template.Spec.NodeSelector[corev1.LabelArchStable] = "none" // never scheduled
	if _, err := sa.BatchV1().Jobs(ns).Create(ctx, j, metav1.CreateOptions{}); err != nil {
		t.Errorf("creating a job with the RoleBinding: %v", err)
	}
}

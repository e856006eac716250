package test

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"

	"kiln/test/harness"
	kubeharness "kiln/test/harness/kube"
)

// kubeEnv is one test cluster with a registry, kiln's image in it, a
// two-platform busybox base, and the agent that plays the arm64 node.
type kubeEnv struct {
	reg   *harness.Registry
	cl    *kubeharness.Cluster
	kiln  string // kiln's image
	base  string // busybox, amd64 + arm64
	agent *fakeNodeAgent
	jobs  *jobRecorder
}

func newKubeEnv(t *testing.T) *kubeEnv {
	t.Helper()
	if why := kubeharness.Missing(); why != "" {
		t.Skip(why)
	}
	needBusybox(t)
	reg := harness.NewRegistry(t)
	cl := kubeharness.Start(t, kubeharness.Options{Registry: reg.Addr, FakePodsWaitForRelease: true, FakeNodes: []kubeharness.FakeNode{
		{Name: "arm-1", Arch: "arm64", Ready: true},
		{Name: "arm-down", Arch: "arm64", Ready: false},
	}})
	base, both := pushBusyboxBase(t, reg.Addr)
	if !both {
		t.Skip("busybox-static:arm64 not fetched (.ci/deps.sh): no arm64 base image")
	}
	e := &kubeEnv{reg: reg, cl: cl, kiln: pushKilnImage(t, reg.Addr), base: base}
	e.agent = startFakeNodeAgent(t, cl.Client, "default", "arm-1")
	e.jobs = recordJobs(t, cl.Client, "default")
	return e
}

// pushKilnImage builds kiln's own image (deploy/image) for linux/amd64 with
// kiln, from the binary under test, and pushes it.
func pushKilnImage(t *testing.T, addr string) string {
	t.Helper()
	dir := kilnImageContext(t, "amd64")
	ref := addr + "/tools/kiln:test"
	r := runKiln(t, "build", "--context", dir, "--target", "kiln", "--platform", "linux/amd64", "--destination", ref, "--work-dir", t.TempDir())
	mustExit(t, r, 0)
	return ref
}

// jobRecorder keeps every Job created in a namespace, as created.
type jobRecorder struct {
	mu   sync.Mutex
	jobs map[string]*batchv1.Job
	pods map[string]string // pod -> node
}

func recordJobs(t *testing.T, cs kubernetes.Interface, ns string) *jobRecorder {
	rec := &jobRecorder{jobs: map[string]*batchv1.Job{}, pods: map[string]string{}}
	ctx, cancel := context.WithCancel(context.Background())
	jw, err := cs.BatchV1().Jobs(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pw, err := cs.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, 2)
	go func() {
		defer func() { done <- struct{}{} }()
		for ev := range jw.ResultChan() {
			if j, ok := ev.Object.(*batchv1.Job); ok && ev.Type == watch.Added {
				rec.mu.Lock()
				rec.jobs[j.Name] = j
				rec.mu.Unlock()
			}
		}
	}()
	go func() {
		defer func() { done <- struct{}{} }()
		for ev := range pw.ResultChan() {
			if p, ok := ev.Object.(*corev1.Pod); ok && p.Spec.NodeName != "" {
				rec.mu.Lock()
				rec.pods[p.Labels["job-name"]] = p.Spec.NodeName
				rec.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { cancel(); jw.Stop(); pw.Stop(); <-done; <-done })
	return rec
}

func (r *jobRecorder) snapshot() (map[string]*batchv1.Job, map[string]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	jobs := map[string]*batchv1.Job{}
	for k, v := range r.jobs {
		jobs[k] = v
	}
	pods := map[string]string{}
	for k, v := range r.pods {
		pods[k] = v
	}
	return jobs, pods
}

// buildToml writes a build.toml in dir for images (name -> extra keys; the
// context is the folder of that name in dir) on the test cluster.
func (e *kubeEnv) buildToml(t *testing.T, dir string, images map[string]string, kubeExtra string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[registries.%q]\ninsecure = true\n\n", e.reg.Addr)
	for _, n := range slices.Sorted(maps.Keys(images)) {
		fmt.Fprintf(&b, "[images.%s]\ncontext = %q\ntags = [%q]\n%s\n", n, n, e.reg.Addr+"/acme/"+n+":1", images[n])
	}
	fmt.Fprintf(&b, "[runner]\nkind = \"kubernetes\"\n[runner.kubernetes]\nkubeconfig = %q\nimage = %q\nhost_network = true\npending_timeout = \"90s\"\nttl_after_finished = \"10m\"\n%s",
		e.cl.Kubeconfig, e.kiln, kubeExtra)
	f, err := os.CreateTemp(dir, "build-*.toml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(b.String()); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

// TestBuildAllKubernetes: two images × (linux/amd64 + linux/arm64) built by
// Jobs: amd64 on the real node (kiln's image, container isolation, a RUN in
// a real runc container), arm64 on the kwok arm64 node (run by the test's
// node agent); each Job had the strict nodeSelector and was bound to a node
// of its arch, the pods' logs came back prefixed, the indexes are in the
// registry with the right platforms, and no Job is left.
func TestBuildAllKubernetes(t *testing.T) {
	e := newKubeEnv(t)
	dir := t.TempDir()
	writeContext(t, filepath.Join(dir, "a"), map[string]string{"Dockerfile": fmt.Sprintf(`FROM --platform=$BUILDPLATFORM %s AS build
ARG TARGETARCH
RUN echo "built for $TARGETARCH on $(uname -m)" > /out && cat /out
FROM %s
COPY --from=build /out /out
`, e.base, e.base)})
	writeContext(t, filepath.Join(dir, "b"), map[string]string{
		"Dockerfile":      "FROM scratch\nARG TARGETARCH\nCOPY files/${TARGETARCH}.txt /arch.txt\n",
		"files/amd64.txt": "amd64\n", "files/arm64.txt": "arm64\n",
	})
	plats := "platforms = [\"linux/amd64\", \"linux/arm64\"]\n"
	toml := e.buildToml(t, dir, map[string]string{"a": plats, "b": plats}, "")

	plan := runKilnOpts(t, runOpts{dir: dir}, "build-all", "--config", toml, "--plan")
	mustExit(t, plan, 0)
	for _, want := range []string{"runner kubernetes", "a node with kubernetes.io/arch=arm64, kubernetes.io/os=linux (1 Ready)",
		"a node with kubernetes.io/arch=amd64, kubernetes.io/os=linux (1 Ready)"} {
		if !strings.Contains(plan.stdout, want) {
			t.Errorf("--plan lacks %q:\n%s", want, plan)
		}
	}
	start := time.Now()
	r := runKilnOpts(t, runOpts{timeout: 8 * time.Minute, dir: dir}, "build-all", "--config", toml, "--progress", "plain")
	mustExit(t, r, 0)
	kubeTime := time.Since(start)
	for _, l := range strings.Split(r.stderr, "\n") {
		if strings.Contains(l, "first log line") {
			t.Log(l)
		}
	}
	// The same build with the local runner (arm64 cross: its RUN is on the
	// build platform), for the overhead of Jobs in the log.
	start = time.Now()
	local := runKilnOpts(t, runOpts{dir: dir}, "build-all", "--config", toml, "--runner", "local", "--no-push", "--work-dir", t.TempDir())
	mustExit(t, local, 0)
	t.Logf("build-all of 2 images x 2 platforms: kubernetes runner %.1fs, local runner %.1fs", kubeTime.Seconds(), time.Since(start).Seconds())
	if r := runKilnOpts(t, runOpts{dir: dir}, "build-all", "--config", toml, "--secret", "id=x,src="+toml); r.code != 2 || !strings.Contains(r.stderr, "--secret") {
		t.Errorf("--secret with the Kubernetes runner: want a clear refusal:\n%s", r)
	}
	for _, want := range []string{"[a linux/amd64]", "built for amd64 on x86_64", "[b linux/arm64]"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("kiln's output lacks %q", want)
		}
	}
	for _, n := range []string{"a", "b"} {
		ref, _ := name.ParseReference(e.reg.Addr + "/acme/" + n + ":1")
		idx, err := remote.Index(ref)
		if err != nil {
			t.Fatalf("%s: %v\n%s", ref, err, r)
		}
		m, _ := idx.IndexManifest()
		var got []string
		for _, d := range m.Manifests {
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			cf, _ := img.ConfigFile()
			got = append(got, cf.OS+"/"+cf.Architecture)
			if d.Platform == nil || d.Platform.Architecture != cf.Architecture {
				t.Errorf("%s: index entry %v holds a %s image", ref, d.Platform, cf.Architecture)
			}
		}
		slices.Sort(got)
		if strings.Join(got, ",") != "linux/amd64,linux/arm64" {
			t.Errorf("%s: platforms %v", ref, got)
		}
	}
	jobs, pods := e.jobs.snapshot()
	if len(jobs) != 4 {
		t.Errorf("%d Jobs created, want 4: %v", len(jobs), jobs)
	}
	for n, j := range jobs {
		sel := j.Spec.Template.Spec.NodeSelector
		arch := sel[corev1.LabelArchStable]
		if sel[corev1.LabelOSStable] != "linux" || (arch != "amd64" && arch != "arm64") || !strings.Contains(n, arch) {
			t.Errorf("Job %s: nodeSelector %v", n, sel)
		}
		want := map[string]string{"amd64": e.cl.RealNode, "arm64": "arm-1"}[arch]
		if pods[n] != want {
			t.Errorf("Job %s (%s) ran on %q, want %q", n, arch, pods[n], want)
		}
	}
	if ran := e.agent.pods(); len(ran) != 2 {
		t.Errorf("the arm64 node ran %v, want the two arm64 builds", ran)
	}
	left, err := e.cl.Client.BatchV1().Jobs("default").List(t.Context(), metav1.ListOptions{})
	if err != nil || len(left.Items) != 0 {
		t.Errorf("Jobs left behind: %v (%v)", left, err)
	}
	if t.Failed() {
		t.Logf("kiln:\n%s", r)
	}

	t.Run("layer cache in the registry, from every Job", func(t *testing.T) {
		cold := runKilnOpts(t, runOpts{timeout: 8 * time.Minute, dir: dir}, "build-all", "--config", toml, "--progress", "plain", "--cache")
		mustExit(t, cold, 0)
		warm := runKilnOpts(t, runOpts{timeout: 8 * time.Minute, dir: dir}, "build-all", "--config", toml, "--progress", "plain", "--cache")
		mustExit(t, warm, 0)
		rows := 0
		for _, l := range strings.Split(warm.stdout, "\n") {
			f := strings.Fields(l)
			if len(f) < 3 || (f[0] != "a" && f[0] != "b") {
				continue
			}
			rows++
			if got := strings.Join(f[len(f)-2:], " "); !strings.HasSuffix(got, "hits") || !strings.HasPrefix(got, strings.Split(f[len(f)-2], "/")[1]+"/") {
				t.Errorf("a rebuild with nothing changed must hit every step in every Job: %q", l)
			}
		}
		if rows != 4 {
			t.Errorf("%d summary rows, want 4:\n%s", rows, warm.stdout)
		}
		for _, n := range []string{"a", "b"} {
			repo, _ := name.NewRepository(e.reg.Addr + "/acme/" + n + "/cache")
			tags, err := remote.List(repo)
			if err != nil || len(tags) == 0 {
				t.Errorf("%s: no layer cache entries (%v)", repo, err)
			}
		}
		if t.Failed() {
			t.Logf("cold:\n%s\nwarm:\n%s", cold, warm)
		}
	})
}

// TestBuildAllKubernetesFailures: what fails, fails clearly and early, and
// leaves nothing behind.
func TestBuildAllKubernetesFailures(t *testing.T) {
	e := newKubeEnv(t)
	dir := t.TempDir()
	writeContext(t, filepath.Join(dir, "ok"), map[string]string{"Dockerfile": "FROM scratch\nCOPY Dockerfile /x\n"})
	writeContext(t, filepath.Join(dir, "bad"), map[string]string{"Dockerfile": fmt.Sprintf("FROM %s\nRUN echo going to fail; exit 7\n", e.base)})

	t.Run("required platform without a node", func(t *testing.T) {
		toml := e.buildToml(t, dir, map[string]string{"ok": "platforms = [\"linux/amd64\", \"linux/s390x\"]\n"}, "")
		before, _ := e.jobs.snapshot()
		r := runKilnOpts(t, runOpts{dir: dir}, "build-all", "--config", toml)
		mustExit(t, r, 1)
		if !strings.Contains(r.stderr+r.stdout, "kubernetes.io/arch=s390x") {
			t.Errorf("want the labels looked for named:\n%s", r)
		}
		if after, _ := e.jobs.snapshot(); len(after) != len(before) {
			t.Errorf("Jobs were created before the platform was refused")
		}
	})
	t.Run("optional platform without a ready node is dropped", func(t *testing.T) {
		toml := e.buildToml(t, dir, map[string]string{"ok": "platforms = [\"linux/amd64\"]\noptional_platforms = [\"linux/riscv64\"]\n"}, "")
		r := runKilnOpts(t, runOpts{dir: dir, timeout: 5 * time.Minute}, "build-all", "--config", toml)
		mustExit(t, r, 0)
		if !strings.Contains(r.stdout+r.stderr, "riscv64") {
			t.Errorf("want the dropped platform reported:\n%s", r)
		}
	})
	t.Run("failing RUN", func(t *testing.T) {
		toml := e.buildToml(t, dir, map[string]string{"bad": "platforms = [\"linux/amd64\"]\n"}, "keep_failed = true\n")
		r := runKilnOpts(t, runOpts{dir: dir, timeout: 5 * time.Minute}, "build-all", "--config", toml)
		mustExit(t, r, 1)
		for _, want := range []string{"exit code 7", "going to fail"} {
			if !strings.Contains(r.stdout+r.stderr, want) {
				t.Errorf("want %q in kiln's error:\n%s", want, r)
			}
		}
		ref, _ := name.ParseReference(e.reg.Addr + "/acme/bad:1")
		if _, err := remote.Head(ref); err == nil {
			t.Errorf("%s was pushed although its build failed", ref)
		}
		kept, _ := e.cl.Client.BatchV1().Jobs("default").List(t.Context(), metav1.ListOptions{LabelSelector: "kiln.dev/image=bad"})
		if len(kept.Items) != 1 {
			t.Errorf("keep_failed: %d failed Jobs kept, want 1", len(kept.Items))
		}
		for _, j := range kept.Items {
			_ = e.cl.Client.BatchV1().Jobs("default").Delete(t.Context(), j.Name, metav1.DeleteOptions{PropagationPolicy: ptrTo(metav1.DeletePropagationBackground)})
		}
	})
	t.Run("unpullable image", func(t *testing.T) {
		toml := e.buildToml(t, dir, map[string]string{"ok": "platforms = [\"linux/amd64\"]\n"}, "")
		data, _ := os.ReadFile(toml)
		data = []byte(strings.Replace(string(data), e.kiln, e.reg.Addr+"/tools/nope:1", 1))
		data = []byte(strings.Replace(string(data), `pending_timeout = "90s"`, `pending_timeout = "20s"`, 1))
		_ = os.WriteFile(toml, data, 0o644)
		r := runKilnOpts(t, runOpts{dir: dir, timeout: 3 * time.Minute}, "build-all", "--config", toml)
		mustExit(t, r, 1)
		if out := r.stdout + r.stderr; !strings.Contains(out, "ErrImagePull") && !strings.Contains(out, "ImagePullBackOff") {
			t.Errorf("want the pull failure named:\n%s", r)
		}
	})
	t.Run("SIGTERM deletes the Jobs", func(t *testing.T) {
		slow := filepath.Join(dir, "slow")
		writeContext(t, slow, map[string]string{"Dockerfile": fmt.Sprintf("FROM %s\nRUN sleep 300\n", e.base)})
		toml := e.buildToml(t, dir, map[string]string{"slow": "platforms = [\"linux/amd64\"]\n"}, "")
		cmd, _, stderr := kilnCmd(t, t.Context(), runOpts{dir: dir}, "build-all", "--config", toml, "--progress", "plain")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(3 * time.Minute)
		for !strings.Contains(stderr.String(), "Running on") && time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
		}
		if !strings.Contains(stderr.String(), "Running on") {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("the slow build's pod never ran:\n%s", stderr)
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		left, _ := e.cl.Client.BatchV1().Jobs("default").List(t.Context(), metav1.ListOptions{LabelSelector: "kiln.dev/image=slow"})
		if len(left.Items) != 0 {
			t.Errorf("after SIGTERM, Jobs left: %d\n%s", len(left.Items), stderr)
		}
	})
	t.Run("missing RBAC", func(t *testing.T) {
		if _, err := e.cl.Client.CoreV1().ServiceAccounts("default").Create(t.Context(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "nobody"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		kc := e.cl.ServiceAccountKubeconfig(t, "default", "nobody")
		toml := e.buildToml(t, dir, map[string]string{"ok": "platforms = [\"linux/amd64\"]\n"}, "")
		data, _ := os.ReadFile(toml)
		_ = os.WriteFile(toml, []byte(strings.Replace(string(data), e.cl.Kubeconfig, kc, 1)), 0o644)
		r := runKilnOpts(t, runOpts{dir: dir}, "build-all", "--config", toml)
		mustExit(t, r, 1)
		if !strings.Contains(r.stderr, "may not create jobs") || !strings.Contains(r.stderr, "kiln render rbac") {
			t.Errorf("want one preflight error naming the permissions:\n%s", r)
		}
	})
}

func ptrTo[T any](v T) *T { return &v }

// TestRenderKubernetes: every object of kiln render all is accepted by the
// API server (server-side dry run); the rendered Job is the Job build-all
// creates for the same inputs; the rendered CronJob, triggered once as a
// Job on the real node, leaves a cache that kiln warm --verify accepts.
func TestRenderKubernetes(t *testing.T) {
	e := newKubeEnv(t)
	dir := t.TempDir()
	writeContext(t, filepath.Join(dir, "b"), map[string]string{
		"Dockerfile":      fmt.Sprintf("FROM %s\nARG TARGETARCH\nCOPY files/${TARGETARCH}.txt /arch.txt\n", e.base),
		"files/amd64.txt": "amd64\n", "files/arm64.txt": "arm64\n",
	})
	toml := e.buildToml(t, dir, map[string]string{"b": "platforms = [\"linux/amd64\"]\n"}, "")
	full := e.buildToml(t, dir, map[string]string{"b": "platforms = [\"linux/amd64\", \"linux/arm64\"]\n"},
		"credentials_secret = \"regcred\"\ncache_claim = \"kiln-cache\"\nservice_account = \"kiln-builder\"\n"+
			"node_selector = { \"kubernetes.io/hostname\" = \"localhost\" }\n"+
			"tolerations = [{ key = \"arch\", value = \"arm64\", effect = \"NoSchedule\" }]\nrequests = { cpu = \"100m\", memory = \"128Mi\" }\n")
	fullData, _ := os.ReadFile(full)
	_ = os.WriteFile(full, []byte(strings.Replace(string(fullData), "[runner]", fmt.Sprintf("[warm]\nextra = [%q]\n\n[runner]", e.base), 1)), 0o644)

	t.Run("server-side dry run", func(t *testing.T) {
		r := runKilnOpts(t, runOpts{dir: dir}, "render", "--config", full, "all")
		mustExit(t, r, 0)
		docs := strings.Split(r.stdout, "---\n")
		kinds := map[string]int{}
		for _, doc := range docs {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			kinds[dryRun(t, e.cl.Client, doc)]++
		}
		for _, k := range []string{"ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding", "PersistentVolumeClaim", "CronJob", "Container", "Job"} {
			if kinds[k] == 0 {
				t.Errorf("render all made no %s (made %v)", k, kinds)
			}
		}
		if kinds["Job"] != 2 {
			t.Errorf("render all made %d Jobs, want one per platform", kinds["Job"])
		}
	})

	t.Run("the rendered Job is the one build-all creates", func(t *testing.T) {
		r := runKilnOpts(t, runOpts{dir: dir, timeout: 5 * time.Minute}, "build-all", "--config", toml, "--build-id", "same")
		mustExit(t, r, 0)
		jobs, _ := e.jobs.snapshot()
		var created *batchv1.Job
		for n, j := range jobs {
			if strings.HasSuffix(n, "-same") {
				created = j
			}
		}
		if created == nil {
			t.Fatalf("no Job with build id \"same\" among %d", len(jobs))
		}
		rendered := runKilnOpts(t, runOpts{dir: dir}, "render", "--config", toml, "--build-id", "same", "job")
		mustExit(t, rendered, 0)
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode([]byte(strings.TrimPrefix(rendered.stdout, "---\n")), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		job := obj.(*batchv1.Job)
		if job.Name != created.Name {
			t.Fatalf("rendered Job %s, created %s", job.Name, created.Name)
		}
		got, err := e.cl.Client.BatchV1().Jobs("default").Create(t.Context(), job, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			t.Fatal(err)
		}
		if !equality.Semantic.DeepEqual(got.Spec.Template.Spec, created.Spec.Template.Spec) {
			t.Errorf("the rendered Job's pod differs from the created one:\nrendered %+v\ncreated  %+v", got.Spec.Template.Spec, created.Spec.Template.Spec)
		}
		for k, v := range job.Labels {
			if created.Labels[k] != v {
				t.Errorf("label %s: rendered %q, created %q", k, v, created.Labels[k])
			}
		}
	})

	t.Run("the CronJob warms a cache that verifies", func(t *testing.T) {
		cacheDir := t.TempDir()
		pv := &corev1.PersistentVolume{
			ObjectMeta: metav1.ObjectMeta{Name: "kiln-cache-test"},
			Spec: corev1.PersistentVolumeSpec{
				Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resourceMust("50Gi")},
				AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
				PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
				PersistentVolumeSource:        corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: cacheDir}},
				ClaimRef:                      &corev1.ObjectReference{Namespace: "default", Name: "kiln-cache"},
			},
		}
		if _, err := e.cl.Client.CoreV1().PersistentVolumes().Create(t.Context(), pv, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		noCreds := strings.Replace(string(mustRead(t, full)), "credentials_secret = \"regcred\"\n", "", 1)
		_ = os.WriteFile(full, []byte(noCreds), 0o644)
		r := runKilnOpts(t, runOpts{dir: dir}, "render", "--config", full, "rbac", "pvc", "cronjob")
		mustExit(t, r, 0)
		for _, doc := range strings.Split(r.stdout, "---\n") {
			if strings.TrimSpace(doc) != "" {
				create(t, e.cl.Client, doc, metav1.CreateOptions{})
			}
		}
		cron, err := e.cl.Client.BatchV1().CronJobs("default").Get(t.Context(), "kiln-warm", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// kubectl create job --from=cronjob/kiln-warm
		job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "kiln-warm-now", Namespace: "default", Labels: cron.Spec.JobTemplate.Labels}, Spec: cron.Spec.JobTemplate.Spec}
		if _, err := e.cl.Client.BatchV1().Jobs("default").Create(t.Context(), job, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(3 * time.Minute)
		for {
			j, err := e.cl.Client.BatchV1().Jobs("default").Get(t.Context(), job.Name, metav1.GetOptions{})
			if err == nil && j.Status.Succeeded > 0 {
				break
			}
			if time.Now().After(deadline) || err == nil && j.Status.Failed > 0 {
				pods, _ := e.cl.Client.CoreV1().Pods("default").List(t.Context(), metav1.ListOptions{LabelSelector: "job-name=" + job.Name})
				for _, p := range pods.Items {
					logs, _ := e.cl.Client.CoreV1().Pods("default").GetLogs(p.Name, &corev1.PodLogOptions{}).DoRaw(t.Context())
					t.Logf("pod %s: %s\n%s", p.Name, p.Status.Phase, logs)
				}
				t.Fatalf("the warm Job did not complete: %+v", j.Status)
			}
			time.Sleep(time.Second)
		}
		v := runKiln(t, "warm", "--verify", "--cache-dir", cacheDir)
		mustExit(t, v, 0)
		if !strings.Contains(v.stdout, "1 entry") || !strings.Contains(v.stdout, " 0 problems") {
			t.Errorf("the cache the CronJob warmed should hold the base image's entry and verify clean:\n%s", v)
		}
		if _, err := os.Stat(filepath.Join(cacheDir, "last-warm.json")); err != nil {
			t.Errorf("the CronJob's report: %v", err)
		}
	})
}

// dryRun creates the object of one YAML document with a server-side dry
// run and returns its kind; a bare container (warm-init) goes in a Pod.
func dryRun(t *testing.T, cs kubernetes.Interface, doc string) string {
	t.Helper()
	return create(t, cs, doc, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
}

// create creates the object of one YAML document (see dryRun).
func create(t *testing.T, cs kubernetes.Interface, doc string, dry metav1.CreateOptions) string {
	t.Helper()
	ctx := t.Context()
	if !strings.Contains(doc, "\nkind: ") && !strings.HasPrefix(doc, "kind: ") {
		var c corev1.Container
		if err := yaml.Unmarshal([]byte(doc), &c); err != nil {
			t.Fatalf("warm-init: %v\n%s", err, doc)
		}
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "ci", Namespace: "default"}, Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{c}, Containers: []corev1.Container{{Name: "build", Image: c.Image}},
			Volumes: []corev1.Volume{
				{Name: "cache", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "workspace", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "docker-config", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "regcred"}}},
			},
		}}
		if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, dry); err != nil {
			t.Errorf("warm-init in a pod: %v", err)
		}
		return "Container"
	}
	obj, gvk, err := scheme.Codecs.UniversalDeserializer().Decode([]byte(doc), nil, nil)
	if err != nil {
		t.Fatalf("decoding rendered YAML: %v\n%s", err, doc)
	}
	switch o := obj.(type) {
	case *corev1.ServiceAccount:
		_, err = cs.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, dry)
	case *rbacv1.Role:
		_, err = cs.RbacV1().Roles(o.Namespace).Create(ctx, o, dry)
	case *rbacv1.RoleBinding:
		_, err = cs.RbacV1().RoleBindings(o.Namespace).Create(ctx, o, dry)
	case *rbacv1.ClusterRole:
		_, err = cs.RbacV1().ClusterRoles().Create(ctx, o, dry)
	case *rbacv1.ClusterRoleBinding:
		_, err = cs.RbacV1().ClusterRoleBindings().Create(ctx, o, dry)
	case *corev1.PersistentVolumeClaim:
		_, err = cs.CoreV1().PersistentVolumeClaims(o.Namespace).Create(ctx, o, dry)
	case *batchv1.CronJob:
		_, err = cs.BatchV1().CronJobs(o.Namespace).Create(ctx, o, dry)
	case *batchv1.Job:
		_, err = cs.BatchV1().Jobs(o.Namespace).Create(ctx, o, dry)
	default:
		t.Errorf("render made an unexpected %s", gvk.Kind)
	}
	if err != nil {
		t.Errorf("%s: the API server refused it: %v\n%s", gvk.Kind, err, doc)
	}
	return gvk.Kind
}

func resourceMust(q string) resource.Quantity { return resource.MustParse(q) }

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBuildAllInCluster: build-all run from inside a CI pod, as the
// ServiceAccount kiln render rbac makes, with no kubeconfig: in-cluster
// configuration, Jobs created by the pod, an index pushed.
func TestBuildAllInCluster(t *testing.T) {
	e := newKubeEnv(t)
	dir := t.TempDir()
	writeContext(t, filepath.Join(dir, "hello"), map[string]string{
		"Dockerfile":      "FROM scratch\nARG TARGETARCH\nCOPY files/${TARGETARCH}.txt /arch.txt\n",
		"files/amd64.txt": "amd64\n", "files/arm64.txt": "arm64\n",
	})
	toml := fmt.Sprintf(`[registries.%q]
insecure = true
[images.hello]
context = "hello"
platforms = ["linux/amd64", "linux/arm64"]
tags = [%q]
[runner]
kind = "kubernetes"
[runner.kubernetes]
image = %q
host_network = true
`, e.reg.Addr, e.reg.Addr+"/acme/hello:1", e.kiln)
	r := runKilnOpts(t, runOpts{dir: dir}, "render", "--image", e.kiln, "--config", writeFile(t, filepath.Join(dir, "build.toml"), toml), "rbac")
	mustExit(t, r, 0)
	for _, doc := range strings.Split(r.stdout, "---\n") {
		if strings.TrimSpace(doc) != "" {
			create(t, e.cl.Client, doc, metav1.CreateOptions{})
		}
	}
	// The CI pod's workspace: build.toml and the context, copied by a
	// busybox init container out of a ConfigMap (whose files are symlinks).
	files := map[string]string{"build.toml": toml}
	for p, body := range map[string]string{"Dockerfile": "hello/Dockerfile", "amd64.txt": "hello/files/amd64.txt", "arm64.txt": "hello/files/arm64.txt"} {
		files[p] = string(mustRead(t, filepath.Join(dir, body)))
	}
	if _, err := e.cl.Client.CoreV1().ConfigMaps("default").Create(t.Context(), &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "workspace"}, Data: files}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	host, port, _ := strings.Cut(strings.TrimPrefix(e.cl.Server, "https://"), ":")
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "ci", Namespace: "default"},
		Spec: corev1.PodSpec{
			ServiceAccountName: "kiln-coordinator", HostNetwork: true, RestartPolicy: corev1.RestartPolicyNever,
			NodeSelector: map[string]string{corev1.LabelHostname: e.cl.RealNode},
			InitContainers: []corev1.Container{{
				Name: "checkout", Image: e.base, Command: []string{"/bin/sh", "-c",
					"mkdir -p /workspace/hello/files && cp -L /src/build.toml /workspace/ && cp -L /src/Dockerfile /workspace/hello/ && cp -L /src/*.txt /workspace/hello/files/"},
				VolumeMounts: []corev1.VolumeMount{{Name: "src", MountPath: "/src"}, {Name: "workspace", MountPath: "/workspace"}},
			}},
			Containers: []corev1.Container{{
				Name: "kiln", Image: e.kiln, Args: []string{"build-all", "--config", "/workspace/build.toml", "--progress", "plain"},
				// No kube-proxy in the test cluster: the service address is the apiserver's own.
				Env:          []corev1.EnvVar{{Name: "KUBERNETES_SERVICE_HOST", Value: host}, {Name: "KUBERNETES_SERVICE_PORT", Value: port}},
				VolumeMounts: []corev1.VolumeMount{{Name: "workspace", MountPath: "/workspace"}},
			}},
			Volumes: []corev1.Volume{
				{Name: "src", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "workspace"}}}},
				{Name: "workspace", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			},
		},
	}
	if _, err := e.cl.Client.CoreV1().Pods("default").Create(t.Context(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(4 * time.Minute)
	var phase corev1.PodPhase
	for time.Now().Before(deadline) {
		p, err := e.cl.Client.CoreV1().Pods("default").Get(t.Context(), "ci", metav1.GetOptions{})
		if err == nil {
			phase = p.Status.Phase
		}
		if phase == corev1.PodSucceeded || phase == corev1.PodFailed {
			break
		}
		time.Sleep(time.Second)
	}
	logs, _ := e.cl.Client.CoreV1().Pods("default").GetLogs("ci", &corev1.PodLogOptions{Container: "kiln"}).DoRaw(t.Context())
	if phase != corev1.PodSucceeded {
		t.Fatalf("the CI pod ended %s:\n%s", phase, logs)
	}
	ref, _ := name.ParseReference(e.reg.Addr + "/acme/hello:1")
	idx, err := remote.Index(ref)
	if err != nil {
		t.Fatalf("%s: %v\n%s", ref, err, logs)
	}
	if m, _ := idx.IndexManifest(); len(m.Manifests) != 2 {
		t.Errorf("%s has %d platforms, want 2", ref, len(m.Manifests))
	}
	if !strings.Contains(string(logs), "[hello linux/arm64]") {
		t.Errorf("the CI pod's log lacks the arm64 Job's lines:\n%s", logs)
	}
}

func writeFile(t *testing.T, p, body string) string {
	t.Helper()
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

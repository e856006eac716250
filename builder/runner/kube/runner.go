package kube

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/singleflight"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"

	"kiln/builder/dockerfile"
	"kiln/builder/runner"
	"kiln/manifest"
	"kiln/platform"
)

// Runner builds each (image, platform) as a Job on a node of that
// platform's os and architecture.
type Runner struct {
	api     API
	client  *manifest.Client
	o       Options
	cfg     RunnerConfig
	log     *slog.Logger
	packs   singleflight.Group
	packMu  sync.Mutex
	packed  map[string]packed // context key -> its reference and Dockerfile
	jobsMu  sync.Mutex
	created map[string]bool // Jobs this runner made and has not deleted
	nodes   nodeList
}

// ErrForbidden: the identity build-all runs as lacks a permission it needs.
var ErrForbidden = errors.New("missing Kubernetes permissions")

// RunnerConfig is how the runner behaves, beside what the objects look like.
type RunnerConfig struct {
	BuildID           string        // names this build-all run in every Job
	ContextRepository string        // where contexts go; "" for each image's first tag's repository
	PendingTimeout    time.Duration // a pod Pending longer fails its platform
	KeepFailed        bool          // leave failed Jobs for debugging
	WorkDir           string        // where contexts are packed
}

// NewRunner makes a Runner over the cluster's api; client pushes contexts
// and reads the pushed images back.
func NewRunner(api API, client *manifest.Client, o Options, cfg RunnerConfig, log *slog.Logger) *Runner {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.PendingTimeout <= 0 {
		cfg.PendingTimeout = 5 * time.Minute
	}
	return &Runner{api: api, client: client, o: o, cfg: cfg, log: log, packed: map[string]packed{}, created: map[string]bool{}}
}

// Name is "kubernetes".
func (r *Runner) Name() string { return "kubernetes" }

// Result is what a build pod reports in its termination message: kiln
// build's metadata file.
type Result struct {
	Digest     string `json:"digest"`
	Platform   string `json:"platform"`
	Size       int64  `json:"size"`
	LayerCache *struct {
		Hits   int `json:"hits"`
		Misses int `json:"misses"`
	} `json:"layer_cache"`
}

// Run builds job in a Job and waits for it; the image stays in the
// registry, by digest, in the first tag's repository.
func (r *Runner) Run(ctx context.Context, job runner.Job) (*runner.Outcome, error) {
	spec, err := r.spec(ctx, job)
	if err != nil {
		return nil, err
	}
	obj, err := BuildJob(spec, r.o)
	if err != nil {
		return nil, err
	}
	created, err := r.api.CreateJob(ctx, obj)
	if err != nil {
		return nil, fmt.Errorf("creating Job %s/%s: %w", obj.Namespace, obj.Name, err)
	}
	r.track(created.Name, true)
	r.logf(job, "created Job %s/%s", created.Namespace, created.Name)
	res, node, err := r.wait(ctx, created, job)
	if err == nil || !r.cfg.KeepFailed || ctx.Err() != nil {
		r.remove(created.Namespace, created.Name)
	} else {
		r.logf(job, "kept the failed Job %s/%s (keep_failed)", created.Namespace, created.Name)
		r.track(created.Name, false)
	}
	if err != nil {
		return nil, err
	}
	d, err := v1.NewHash(res.Digest)
	if err != nil {
		return nil, fmt.Errorf("Job %s reported digest %q: %w", created.Name, res.Digest, err)
	}
	if res.Platform != "" && res.Platform != platform.Format(spec.Platform) {
		return nil, fmt.Errorf("Job %s built %s, not %s", created.Name, res.Platform, platform.Format(spec.Platform))
	}
	out := &runner.Outcome{Digest: d, Where: node, Size: res.Size}
	if lc := res.LayerCache; lc != nil {
		out.CacheHits, out.CacheMisses = lc.Hits, lc.Misses
	}
	return out, nil
}

// spec packs and pushes job's context (once per context) and assembles the
// BuildSpec.
func (r *Runner) spec(ctx context.Context, job runner.Job) (BuildSpec, error) {
	if len(job.Tags) == 0 {
		return BuildSpec{}, fmt.Errorf("images.%s: the Kubernetes runner pushes each platform to the first tag's repository: give the image tags", job.Image)
	}
	ctxRef, df, err := r.pushContext(ctx, job)
	if err != nil {
		return BuildSpec{}, err
	}
	return SpecFor(job, r.cfg.BuildID, ctxRef, df)
}

// SpecFor is the BuildSpec of job: its context at ctxRef (blob://... or a
// git URL), the platform image pushed by digest into the first tag's
// repository, the init container warming the bases the Dockerfile df names
// for the platform. The runner and kiln render both make their Jobs from
// it.
func SpecFor(job runner.Job, buildID, ctxRef string, df []byte) (BuildSpec, error) {
	req := job.Request
	if len(job.Tags) == 0 {
		return BuildSpec{}, fmt.Errorf("images.%s: the Kubernetes runner pushes each platform to the first tag's repository: give the image tags", job.Image)
	}
	bases, err := dockerfile.BaseImages(df, req.Dockerfile, dockerfile.Options{Args: req.BuildArgs, Target: req.Target, TargetPlatform: job.Platform})
	if err != nil {
		return BuildSpec{}, fmt.Errorf("images.%s: %w", job.Image, err)
	}
	var refs []string
	for _, b := range bases {
		if platform.Equal(b.Platform, job.Platform) && !slices.Contains(refs, b.Ref) {
			refs = append(refs, b.Ref)
		}
	}
	return BuildSpec{
		BuildID: buildID, Image: job.Image, Platform: job.Platform, Context: ctxRef,
		Dockerfile: req.Dockerfile, Target: req.Target, BuildArgs: req.BuildArgs, Labels: req.Labels,
		Repository: job.Tags[0].Context().Name(), Bases: refs,
		Reproducible: req.Reproducible, SourceDateEpoch: req.SourceDateEpoch,
		AllowPlatformMismatch: req.AllowPlatformMismatch,
	}, nil
}

// pushContext prepares the context (a git URL passes through) and pushes
// it as a blob, once per context: the platforms of an image share it.
func (r *Runner) pushContext(ctx context.Context, job runner.Job) (string, []byte, error) {
	req := job.Request
	repo, err := ContextRepository(r.cfg.ContextRepository, job.Tags)
	if err != nil {
		return "", nil, fmt.Errorf("images.%s: %w", job.Image, err)
	}
	key := req.Context + "\x00" + req.Dockerfile + "\x00" + repo.Name()
	v, err, _ := r.packs.Do(key, func() (any, error) {
		r.packMu.Lock()
		done, ok := r.packed[key]
		r.packMu.Unlock()
		if ok {
			return done, nil
		}
		pc, err := PrepareContext(ctx, req, repo, r.cfg.WorkDir)
		if err != nil {
			return nil, fmt.Errorf("images.%s: %w", job.Image, err)
		}
		defer pc.Close()
		if pc.Pack != "" {
			start := time.Now()
			d, size, err := r.client.PushBlob(ctx, repo, pc.Pack)
			if err != nil {
				return nil, fmt.Errorf("images.%s: uploading the build context: %w", job.Image, err)
			}
			if want := "blob://" + repo.Digest(d.String()).String(); want != pc.Ref {
				return nil, fmt.Errorf("images.%s: the build context was pushed as %s, packed as %s", job.Image, want, pc.Ref)
			}
			r.log.Info("build context uploaded", "image", job.Image, "digest", d.String(), "bytes", size, "seconds", time.Since(start).Round(time.Millisecond).Seconds())
		}
		p := packed{ref: pc.Ref, df: pc.Dockerfile}
		r.packMu.Lock()
		r.packed[key] = p
		r.packMu.Unlock()
		return p, nil
	})
	if err != nil {
		return "", nil, err
	}
	p := v.(packed)
	return p.ref, p.df, nil
}

// packed is a context ready in the registry.
type packed struct {
	ref string
	df  []byte
}

// wait follows the Job's pod until it ends: streams its log from the
// moment its container starts, fails it when it stays Pending too long,
// and reads its result from the termination message.
func (r *Runner) wait(ctx context.Context, job *batchv1.Job, rj runner.Job) (*Result, string, error) {
	f := &follower{r: r, job: job, rj: rj, tail: &tailBuffer{}, pending: time.NewTimer(r.cfg.PendingTimeout), created: time.Now()}
	defer f.pending.Stop()
	defer f.stopLog()
	for {
		w, err := r.api.WatchPods(ctx, job.Namespace, metav1.ListOptions{LabelSelector: "job-name=" + job.Name})
		if err != nil {
			return nil, "", fmt.Errorf("watching the pods of Job %s: %w", job.Name, err)
		}
		res, node, done, err := f.follow(ctx, w)
		w.Stop()
		if done || err != nil {
			return res, node, err
		}
		// The watch ended (the API server's timeout): watch again.
	}
}

// follower is the state of one Job being waited for.
type follower struct {
	r         *Runner
	job       *batchv1.Job
	rj        runner.Job
	tail      *tailBuffer
	pending   *time.Timer
	lastPod   *corev1.Pod
	lastState string
	logDone   chan struct{}
	cancelLog context.CancelFunc
	created   time.Time // when the Job was created
}

// follow handles one watch's events; done is false when the watch closed
// before the pod ended.
func (f *follower) follow(ctx context.Context, w watch.Interface) (*Result, string, bool, error) {
	for {
		select {
		case <-ctx.Done():
			return nil, "", true, fmt.Errorf("Job %s: %w", f.job.Name, context.Cause(ctx))
		case <-f.pending.C:
			return nil, "", true, fmt.Errorf("%w: Job %s: pod still not running after %s: %s", runner.ErrPending, f.job.Name,
				f.r.cfg.PendingTimeout, pendingReason(f.lastPod))
		case ev, ok := <-w.ResultChan():
			if !ok {
				return nil, "", false, nil
			}
			pod, isPod := ev.Object.(*corev1.Pod)
			if !isPod {
				continue
			}
			f.lastPod = pod
			if s := podState(pod); s != f.lastState {
				f.lastState = s
				f.r.logf(f.rj, "pod %s: %s", pod.Name, s)
			}
			if f.logDone == nil && containerStarted(pod) {
				f.pending.Stop()
				f.startLog(ctx, pod)
			}
			switch pod.Status.Phase {
			case corev1.PodSucceeded:
				f.stopLog()
				res, err := terminationResult(pod)
				return res, pod.Spec.NodeName, true, err
			case corev1.PodFailed:
				f.stopLog()
				return nil, pod.Spec.NodeName, true, podFailure(f.job, pod, f.tail.String())
			}
		}
	}
}

// startLog streams the pod's log (init containers, then the build) to the
// job's writer (the coordinator prefixes each line), keeping its tail for
// errors.
func (f *follower) startLog(ctx context.Context, pod *corev1.Pod) {
	logCtx, cancel := context.WithCancel(ctx)
	f.logDone, f.cancelLog = make(chan struct{}), cancel
	var out io.Writer = f.tail
	if f.rj.Log != nil {
		out = io.MultiWriter(f.tail, f.rj.Log)
	}
	out = &firstWrite{w: out, first: func() {
		f.r.logf(f.rj, "first log line %.2fs after the Job was created", time.Since(f.created).Seconds())
	}}
	go func() {
		defer close(f.logDone)
		for _, c := range pod.Spec.InitContainers {
			f.r.copyLog(logCtx, pod, c.Name, out)
		}
		f.r.copyLog(logCtx, pod, buildContainer, out)
	}()
}

// stopLog lets the log stream finish (it ends with the container), for a
// few seconds at most.
func (f *follower) stopLog() {
	if f.logDone == nil {
		return
	}
	select {
	case <-f.logDone:
	case <-time.After(5 * time.Second):
		f.cancelLog()
		<-f.logDone
	}
	f.cancelLog()
}

// copyLog follows one container's log; a container that has not started
// yet (behind an init container) is asked for again, a few times.
func (r *Runner) copyLog(ctx context.Context, pod *corev1.Pod, container string, out io.Writer) {
	for attempt := 0; attempt < 10; attempt++ {
		rc, err := r.api.PodLog(ctx, pod.Namespace, pod.Name, &corev1.PodLogOptions{Container: container, Follow: true})
		if err == nil {
			_, _ = io.Copy(out, rc)
			rc.Close()
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// remove deletes a Job and its pods, with a context of its own: it also
// runs when the build was cancelled.
func (r *Runner) remove(ns, nm string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := r.api.DeleteJob(ctx, ns, nm, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)})
	if err != nil && !apierrors.IsNotFound(err) {
		r.log.Warn("deleting a Job", "job", ns+"/"+nm, "error", err.Error())
		return
	}
	r.track(nm, false)
}

// Cleanup deletes every Job this runner created and has not deleted: what
// kiln does on SIGTERM before it exits.
func (r *Runner) Cleanup() {
	r.jobsMu.Lock()
	var names []string
	for n := range r.created {
		names = append(names, n)
	}
	r.jobsMu.Unlock()
	for _, n := range names {
		r.remove(r.o.namespace(), n)
	}
}

func (r *Runner) track(job string, live bool) {
	r.jobsMu.Lock()
	defer r.jobsMu.Unlock()
	if live {
		r.created[job] = true
	} else {
		delete(r.created, job)
	}
}

func (r *Runner) logf(job runner.Job, format string, args ...any) {
	if job.Log != nil {
		fmt.Fprintf(job.Log, "kiln: "+format+"\n", args...)
		return
	}
	r.log.Info(fmt.Sprintf(format, args...), "image", job.Image, "platform", platform.Format(job.Platform))
}

// terminationResult reads the build container's termination message.
func terminationResult(pod *corev1.Pod) (*Result, error) {
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name != buildContainer || cs.State.Terminated == nil {
			continue
		}
		var res Result
		msg := strings.TrimSpace(cs.State.Terminated.Message)
		if err := json.Unmarshal([]byte(msg), &res); err != nil || res.Digest == "" {
			return nil, fmt.Errorf("pod %s succeeded but its termination message is not kiln's result: %q", pod.Name, msg)
		}
		return &res, nil
	}
	return nil, fmt.Errorf("pod %s succeeded without a terminated build container", pod.Name)
}

// podFailure says why a pod failed: exit code, reason and the log's tail.
func podFailure(job *batchv1.Job, pod *corev1.Pod, tail string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Job %s failed on node %s", job.Name, pod.Spec.NodeName)
	for _, cs := range append(pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses...) {
		if t := cs.State.Terminated; t != nil && t.ExitCode != 0 {
			fmt.Fprintf(&b, ": container %s exited with code %d (%s)", cs.Name, t.ExitCode, t.Reason)
			break
		}
	}
	if pod.Status.Reason != "" {
		fmt.Fprintf(&b, ": %s %s", pod.Status.Reason, pod.Status.Message)
	}
	if tail != "" {
		fmt.Fprintf(&b, "; last lines of its log:\n%s", indentLines(tail))
	}
	return &runner.RemoteError{Msg: b.String()}
}

// pendingReason says why a pod is not running: unschedulable, an image it
// cannot pull, ...
func pendingReason(pod *corev1.Pod) string {
	if pod == nil {
		return "no pod was created (check the Job's events)"
	}
	for _, cs := range append(pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses...) {
		if w := cs.State.Waiting; w != nil && w.Reason != "" && w.Reason != "PodInitializing" && w.Reason != "ContainerCreating" {
			return fmt.Sprintf("%s: %s", w.Reason, w.Message)
		}
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
			return fmt.Sprintf("%s: %s", c.Reason, c.Message)
		}
	}
	return fmt.Sprintf("phase %s", pod.Status.Phase)
}

// podState is a short description of where a pod is, for the log.
func podState(pod *corev1.Pod) string {
	s := string(pod.Status.Phase)
	if pod.Spec.NodeName != "" {
		s += " on " + pod.Spec.NodeName
	}
	if pod.Status.Phase == corev1.PodPending {
		if r := pendingReason(pod); !strings.HasPrefix(r, "phase ") {
			s += " (" + r + ")"
		}
	}
	return s
}

func containerStarted(pod *corev1.Pod) bool {
	for _, cs := range append(pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses...) {
		if cs.State.Running != nil || cs.State.Terminated != nil {
			return true
		}
	}
	return pod.Status.Phase == corev1.PodRunning || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
}

// firstWrite calls first before the first write reaches w.
type firstWrite struct {
	w     io.Writer
	once  sync.Once
	first func()
}

func (f *firstWrite) Write(p []byte) (int, error) {
	f.once.Do(f.first)
	return f.w.Write(p)
}

// tailBuffer keeps the last lines written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

const tailBytes = 4 << 10

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf.Write(p)
	if t.buf.Len() > 2*tailBytes {
		b := t.buf.Bytes()[t.buf.Len()-tailBytes:]
		t.buf.Reset()
		t.buf.Write(b)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := strings.Split(strings.TrimRight(t.buf.String(), "\n"), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}

func indentLines(s string) string {
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}

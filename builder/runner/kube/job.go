package kube

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/image-spec/specs-go/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"kiln/platform"
)

// BuildSpec is one (image, platform) to build in a pod: plain data, the
// same for the runner and for kiln render.
type BuildSpec struct {
	BuildID    string // names the build-all run; in every object's name and labels
	Image      string // the image's name in build.toml
	Platform   specs.Platform
	Context    string // what the pod's kiln reads: blob://REPO@sha256:... or a git URL
	Dockerfile string // relative to the context
	Target     string
	BuildArgs  map[string]string
	Labels     map[string]string
	Repository string   // the platform image is pushed here, by digest only
	Bases      []string // base images the warm init container fetches first; none: no init container
	// Reproducible builds with SOURCE_DATE_EPOCH (or 0) timestamps.
	Reproducible bool
	// AllowPlatformMismatch passes --allow-platform-mismatch to the pod.
	AllowPlatformMismatch bool
	SourceDateEpoch       *time.Time
}

// BuildJob is the Job that builds spec: kiln build in container isolation,
// in an unprivileged pod (no privileged, no hostPath, no added capability,
// seccompProfile RuntimeDefault), on a node of spec.Platform's os and
// architecture, pushing the image by digest and writing its metadata (JSON)
// as the container's termination message.
func BuildJob(spec BuildSpec, o Options) (*batchv1.Job, error) {
	if spec.BuildID == "" || spec.Image == "" || spec.Platform.OS == "" || spec.Platform.Architecture == "" || spec.Context == "" || spec.Repository == "" {
		return nil, fmt.Errorf("kubernetes job: incomplete build spec %+v", spec)
	}
	if o.Image == "" {
		return nil, fmt.Errorf("kubernetes job: no kiln image (runner.kubernetes.image)")
	}
	res, err := resources(o)
	if err != nil {
		return nil, err
	}
	labels := objectLabels(o, "build")
	labels[LabelBuildID] = labelValue(spec.BuildID)
	labels[LabelImage] = labelValue(spec.Image)
	labels[LabelPlatform] = labelValue(platformSlug(spec.Platform))
	annotations := maps.Clone(o.Annotations)
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[LabelImage] = spec.Image
	annotations[LabelPlatform] = platform.Format(spec.Platform)

	pod := podSpec(o, spec.Platform)
	build := kilnContainer(o, buildContainer, buildArgs(spec, o))
	if spec.Reproducible && spec.SourceDateEpoch != nil {
		build.Env = append(build.Env, corev1.EnvVar{Name: "SOURCE_DATE_EPOCH", Value: strconv.FormatInt(spec.SourceDateEpoch.Unix(), 10)})
	}
	build.Resources = res
	build.TerminationMessagePath = TerminationPath
	build.TerminationMessagePolicy = corev1.TerminationMessageReadFile
	build.VolumeMounts = append(build.VolumeMounts, corev1.VolumeMount{Name: "work", MountPath: WorkMount})
	pod.Containers = []corev1.Container{build}
	if len(spec.Bases) > 0 {
		warm := kilnContainer(o, warmContainer, warmArgs(spec, o))
		warm.Resources = res
		pod.InitContainers = []corev1.Container{warm}
	}
	pod.Volumes = append(pod.Volumes, cacheVolume(o), corev1.Volume{
		Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}},
	})
	job := &batchv1.Job{
		TypeMeta: metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"},
		ObjectMeta: metav1.ObjectMeta{
			Name: JobName(spec), Namespace: o.namespace(), Labels: labels,
			Annotations: map[string]string{LabelImage: spec.Image, LabelPlatform: platform.Format(spec.Platform)},
		},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr.To[int32](0), // a failed build is reported, not retried on another pod
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: maps.Clone(labels), Annotations: annotations},
				Spec:       pod,
			},
		},
	}
	if o.ActiveDeadline > 0 {
		job.Spec.ActiveDeadlineSeconds = ptr.To(int64(o.ActiveDeadline.Seconds()))
	}
	if o.TTLAfterFinished > 0 {
		job.Spec.TTLSecondsAfterFinished = ptr.To(int32(o.TTLAfterFinished.Seconds()))
	}
	return job, nil
}

// JobName is the Job's name: kiln-IMAGE-PLATFORM-BUILDID, cut to fit the 63
// characters a Job's name may have (its pods' job-name label holds it).
func JobName(spec BuildSpec) string {
	tail := "-" + platformSlug(spec.Platform) + "-" + labelValue(spec.BuildID)
	img := dnsLabel(spec.Image)
	if room := 63 - len("kiln-") - len(tail); len(img) > room {
		img = strings.TrimRight(img[:max(room, 1)], "-")
	}
	return "kiln-" + img + tail
}

// buildArgs is kiln build's command line in the pod. Registry credentials
// are never in it: they come from the mounted Docker config.
func buildArgs(spec BuildSpec, o Options) []string {
	args := []string{
		"build", "--progress", "plain", "--isolation", "container",
		"--context", spec.Context, "--platform", platform.Format(spec.Platform),
		"--cache-dir", CacheMount, "--work-dir", WorkMount,
		"--push-by-digest", "--destination", spec.Repository,
		"--metadata-file", TerminationPath,
	}
	if spec.Dockerfile != "" {
		args = append(args, "--dockerfile", spec.Dockerfile)
	}
	if spec.Target != "" {
		args = append(args, "--target", spec.Target)
	}
	for _, k := range slices.Sorted(maps.Keys(spec.BuildArgs)) {
		args = append(args, "--build-arg", k+"="+spec.BuildArgs[k])
	}
	for _, k := range slices.Sorted(maps.Keys(spec.Labels)) {
		args = append(args, "--label", k+"="+spec.Labels[k])
	}
	if spec.Reproducible {
		args = append(args, "--reproducible")
	}
	if spec.AllowPlatformMismatch {
		args = append(args, "--allow-platform-mismatch")
	}
	args = append(args, o.LayerCache.args(spec.Repository)...)
	return append(args, insecureArgs(o)...)
}

// warmArgs is the init container's kiln warm: this platform's bases only.
func warmArgs(spec BuildSpec, o Options) []string {
	args := []string{"warm", "--progress", "plain", "--cache-dir", CacheMount, "--platform", platform.Format(spec.Platform)}
	for _, b := range spec.Bases {
		args = append(args, "--image", b)
	}
	return append(args, insecureArgs(o)...)
}

func insecureArgs(o Options) []string {
	var args []string
	for _, h := range slices.Sorted(slices.Values(o.Insecure)) {
		args = append(args, "--insecure-registry", h)
	}
	for _, h := range slices.Sorted(slices.Values(o.SkipTLSVerify)) {
		args = append(args, "--skip-tls-verify-registry", h)
	}
	return args
}

// podSpec is what every kiln pod shares: placement, identity, security.
func podSpec(o Options, p specs.Platform) corev1.PodSpec {
	sel := maps.Clone(o.NodeSelector)
	if sel == nil {
		sel = map[string]string{}
	}
	sel[corev1.LabelOSStable] = p.OS // never overridable: config refuses them in node_selector
	sel[corev1.LabelArchStable] = p.Architecture
	spec := corev1.PodSpec{
		RestartPolicy:                corev1.RestartPolicyNever,
		NodeSelector:                 sel,
		Tolerations:                  tolerations(o.Tolerations),
		ServiceAccountName:           o.ServiceAccount,
		AutomountServiceAccountToken: ptr.To(false), // a build needs no API access
		EnableServiceLinks:           ptr.To(false),
		HostNetwork:                  o.HostNetwork,
		SecurityContext: &corev1.PodSecurityContext{
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
	}
	for _, s := range o.ImagePullSecrets {
		spec.ImagePullSecrets = append(spec.ImagePullSecrets, corev1.LocalObjectReference{Name: s})
	}
	if o.CredentialsSecret != "" {
		spec.Volumes = append(spec.Volumes, corev1.Volume{Name: "docker-config", VolumeSource: corev1.VolumeSource{
			Secret: &corev1.SecretVolumeSource{
				SecretName: o.CredentialsSecret,
				Items:      []corev1.KeyToPath{{Key: corev1.DockerConfigJsonKey, Path: "config.json"}},
			},
		}})
	}
	return spec
}

// kilnContainer runs kiln's image with args: as root in the container (the
// kaniko way: container isolation replaces the container's own /) but with
// no privilege escalation and only the runtime's default capabilities.
func kilnContainer(o Options, name string, args []string) corev1.Container {
	c := corev1.Container{
		Name: name, Image: o.Image, Args: args,
		ImagePullPolicy: corev1.PullPolicy(o.ImagePullPolicy),
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                ptr.To[int64](0),
			RunAsNonRoot:             ptr.To(false),
			Privileged:               ptr.To(false),
			AllowPrivilegeEscalation: ptr.To(false),
		},
		VolumeMounts: []corev1.VolumeMount{{Name: "cache", MountPath: CacheMount}},
	}
	if c.ImagePullPolicy == "" {
		c.ImagePullPolicy = corev1.PullIfNotPresent
	}
	if o.CredentialsSecret != "" {
		c.Env = []corev1.EnvVar{{Name: "DOCKER_CONFIG", Value: DockerConfigDir}}
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "docker-config", MountPath: DockerConfigDir, ReadOnly: true})
	}
	return c
}

// cacheVolume is the warm cache: the configured claim, else an emptyDir
// the init container fills.
func cacheVolume(o Options) corev1.Volume {
	if o.CacheClaim != "" {
		return corev1.Volume{Name: "cache", VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: o.CacheClaim},
		}}
	}
	return corev1.Volume{Name: "cache", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}
}

func tolerations(ts []Toleration) []corev1.Toleration {
	var out []corev1.Toleration
	for _, t := range ts {
		out = append(out, corev1.Toleration{
			Key: t.Key, Operator: corev1.TolerationOperator(t.Operator), Value: t.Value,
			Effect: corev1.TaintEffect(t.Effect), TolerationSeconds: t.Seconds,
		})
	}
	return out
}

// resources parses requests and limits (config checked their shape; the
// API server's parser has the last word).
func resources(o Options) (corev1.ResourceRequirements, error) {
	var r corev1.ResourceRequirements
	parse := func(kind string, m map[string]string) (corev1.ResourceList, error) {
		if len(m) == 0 {
			return nil, nil
		}
		list := corev1.ResourceList{}
		for k, v := range m {
			q, err := resource.ParseQuantity(v)
			if err != nil {
				return nil, fmt.Errorf("runner.kubernetes.%s.%s: %q: %w", kind, k, v, err)
			}
			list[corev1.ResourceName(k)] = q
		}
		return list, nil
	}
	var err error
	if r.Requests, err = parse("requests", o.Requests); err != nil {
		return r, err
	}
	r.Limits, err = parse("limits", o.Limits)
	return r, err
}

// objectLabels are the labels of every object kiln makes.
func objectLabels(o Options, component string) map[string]string {
	l := maps.Clone(o.Labels)
	if l == nil {
		l = map[string]string{}
	}
	l[LabelName] = "kiln"
	l[LabelManagedBy] = "kiln"
	l[LabelComponent] = component
	return l
}

var notLabel = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// labelValue makes s a valid label value (63 characters, alphanumeric at
// both ends).
func labelValue(s string) string {
	s = notLabel.ReplaceAllString(s, "-")
	if len(s) > 63 {
		s = s[:63]
	}
	return strings.Trim(s, "-_.")
}

var notDNS = regexp.MustCompile(`[^a-z0-9-]+`)

// dnsLabel makes s usable in an object name.
func dnsLabel(s string) string {
	return strings.Trim(notDNS.ReplaceAllString(strings.ToLower(s), "-"), "-")
}

// platformSlug is p for names and labels: linux-arm64-v8.
func platformSlug(p specs.Platform) string {
	return dnsLabel(strings.ReplaceAll(platform.Format(p), "/", "-"))
}

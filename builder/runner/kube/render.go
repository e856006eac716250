package kube

import (
	"bytes"
	"fmt"
	"slices"

	specs "github.com/opencontainers/image-spec/specs-go/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"kiln/platform"
)

// Names of the objects kiln render makes.
const (
	CoordinatorAccount = "kiln-coordinator" // the ServiceAccount build-all runs as in a CI pod
	CacheClaimDefault  = "kiln-cache"
	WarmCronJobName    = "kiln-warm"
)

// RenderKinds are what kiln render can write, in the order "all" writes them.
var RenderKinds = []string{"rbac", "pvc", "cronjob", "warm-init", "job"}

// RenderInput is what the rendered objects are made from.
type RenderInput struct {
	Options Options
	Jobs    []BuildSpec // the build Jobs, one per (image, platform)
	// WarmImages are what the CronJob warms, for each of WarmPlatforms;
	// the init container warms what build.toml says, for WarmPlatforms
	// (none: build.toml's [warm]).
	WarmImages    []string
	WarmPlatforms []specs.Platform
}

// Render writes the objects of kinds as one YAML stream.
func Render(in RenderInput, kinds []string) ([]byte, error) {
	var out bytes.Buffer
	for _, kind := range RenderKinds {
		if !slices.Contains(kinds, kind) && !slices.Contains(kinds, "all") {
			continue
		}
		objs, err := renderKind(in, kind)
		if err != nil {
			return nil, err
		}
		for _, obj := range objs {
			b, err := yaml.Marshal(obj)
			if err != nil {
				return nil, fmt.Errorf("rendering %s: %w", kind, err)
			}
			out.WriteString("---\n")
			out.Write(b)
		}
	}
	return out.Bytes(), nil
}

func renderKind(in RenderInput, kind string) ([]any, error) {
	o := in.Options
	switch kind {
	case "rbac":
		return toAny(RBAC(o)), nil
	case "pvc":
		return []any{CachePVC(o)}, nil
	case "cronjob":
		cj, err := WarmCronJob(o, in.WarmImages, in.WarmPlatforms)
		return []any{cj}, err
	case "warm-init":
		return []any{WarmInitContainer(o, in.WarmPlatforms)}, nil
	case "job":
		var out []any
		for _, spec := range in.Jobs {
			j, err := BuildJob(spec, o)
			if err != nil {
				return nil, err
			}
			out = append(out, j)
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown kind %q (want %v or all)", kind, RenderKinds)
}

func toAny(objs []runtime.Object) []any {
	out := make([]any, len(objs))
	for i, o := range objs {
		out[i] = o
	}
	return out
}

// RBAC is what build-all needs to run from inside a CI pod, and no more:
// a ServiceAccount, a Role to create, watch and delete its Jobs and read
// their pods' status, events and logs in the namespace, and a ClusterRole
// to list nodes (the preflight that refuses a platform no node can run).
// The build pods' own ServiceAccount, if named, gets no rights at all.
func RBAC(o Options) []runtime.Object {
	ns := o.namespace()
	labels := objectLabels(o, "coordinator")
	meta := func(name string, namespaced bool) metav1.ObjectMeta {
		m := metav1.ObjectMeta{Name: name, Labels: labels}
		if namespaced {
			m.Namespace = ns
		}
		return m
	}
	subject := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: CoordinatorAccount, Namespace: ns}}
	objs := []runtime.Object{
		&corev1.ServiceAccount{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"}, ObjectMeta: meta(CoordinatorAccount, true)},
		&rbacv1.Role{
			TypeMeta: metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "Role"}, ObjectMeta: meta(CoordinatorAccount, true),
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{"batch"}, Resources: []string{"jobs"}, Verbs: []string{"create", "get", "list", "watch", "delete"}},
				{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}},
				{APIGroups: []string{""}, Resources: []string{"pods/log"}, Verbs: []string{"get"}},
				{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"get", "list", "watch"}},
			},
		},
		&rbacv1.RoleBinding{
			TypeMeta: metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "RoleBinding"}, ObjectMeta: meta(CoordinatorAccount, true),
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: CoordinatorAccount},
			Subjects: subject,
		},
		&rbacv1.ClusterRole{
			TypeMeta: metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole"}, ObjectMeta: meta(CoordinatorAccount+"-nodes", false),
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch"}}},
		},
		&rbacv1.ClusterRoleBinding{
			TypeMeta: metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding"}, ObjectMeta: meta(CoordinatorAccount+"-nodes-"+ns, false),
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: CoordinatorAccount + "-nodes"},
			Subjects: subject,
		},
	}
	if o.ServiceAccount != "" && o.ServiceAccount != CoordinatorAccount {
		objs = append(objs, &corev1.ServiceAccount{
			TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"}, ObjectMeta: meta(o.ServiceAccount, true),
			AutomountServiceAccountToken: ptr.To(false),
		})
	}
	return objs
}

// CachePVC is the warm cache's claim: ReadWriteMany, shared by the warm
// CronJob and every build pod.
func CachePVC(o Options) *corev1.PersistentVolumeClaim {
	size := o.CacheSize
	if size == "" {
		size = "20Gi"
	}
	pvc := &corev1.PersistentVolumeClaim{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "PersistentVolumeClaim"},
		ObjectMeta: metav1.ObjectMeta{Name: cacheClaim(o), Namespace: o.namespace(), Labels: objectLabels(o, "cache")},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}},
		},
	}
	if o.StorageClass != "" {
		pvc.Spec.StorageClassName = ptr.To(o.StorageClass)
	}
	return pvc
}

func cacheClaim(o Options) string {
	if o.CacheClaim != "" {
		return o.CacheClaim
	}
	return CacheClaimDefault
}

// WarmCronJob is the nightly kiln warm --refresh --prune over the cache
// claim: the base images of every image and [warm].extra (images, listed
// when rendered: the pod has build.toml's Dockerfiles no more than its
// contexts) for every warm platform.
func WarmCronJob(o Options, images []string, plats []specs.Platform) (*batchv1.CronJob, error) {
	if len(images) == 0 {
		return nil, fmt.Errorf("the warm CronJob has no image to warm (no base image in any Dockerfile, no [warm].extra)")
	}
	o.CacheClaim = cacheClaim(o) // the CronJob fills the shared claim, never an emptyDir
	pod := podSpec(o, specs.Platform{OS: "linux"})
	delete(pod.NodeSelector, corev1.LabelArchStable) // any linux node may warm: it only downloads
	pod.RestartPolicy = corev1.RestartPolicyOnFailure
	args := []string{"warm", "--progress", "plain", "--cache-dir", CacheMount, "--refresh", "--prune", "--report", CacheMount + "/last-warm.json"}
	for _, p := range plats {
		args = append(args, "--platform", platform.Format(p))
	}
	for _, img := range images {
		args = append(args, "--image", img)
	}
	pod.Containers = []corev1.Container{kilnContainer(o, warmContainer, append(args, insecureArgs(o)...))}
	pod.Volumes = append(pod.Volumes, cacheVolume(o))
	schedule := o.WarmSchedule
	if schedule == "" {
		schedule = "17 3 * * *"
	}
	labels := objectLabels(o, "warm")
	return &batchv1.CronJob{
		TypeMeta:   metav1.TypeMeta{APIVersion: "batch/v1", Kind: "CronJob"},
		ObjectMeta: metav1.ObjectMeta{Name: WarmCronJobName, Namespace: o.namespace(), Labels: labels},
		Spec: batchv1.CronJobSpec{
			Schedule:                   schedule,
			ConcurrencyPolicy:          batchv1.ForbidConcurrent,
			SuccessfulJobsHistoryLimit: ptr.To[int32](3),
			FailedJobsHistoryLimit:     ptr.To[int32](3),
			JobTemplate: batchv1.JobTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: batchv1.JobSpec{
					BackoffLimit: ptr.To[int32](2),
					Template:     corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: o.Annotations}, Spec: pod},
				},
			},
		},
	}, nil
}

// WarmInitContainer is an init container for a CI pod that builds with
// kiln: it warms what build.toml (mounted at /workspace) needs into the
// cache volume before the build container starts. The pod must have the
// volumes "cache" (the claim) and, with a credentials Secret,
// "docker-config".
func WarmInitContainer(o Options, plats []specs.Platform) corev1.Container {
	args := []string{"warm", "--progress", "plain", "--config", "/workspace/build.toml", "--cache-dir", CacheMount}
	for _, p := range plats {
		args = append(args, "--platform", platform.Format(p))
	}
	c := kilnContainer(o, warmContainer, append(args, insecureArgs(o)...))
	c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "workspace", MountPath: "/workspace"})
	return c
}

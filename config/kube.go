package config

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
)

// Defaults for [runner.kubernetes].
const (
	DefaultPendingTimeout   = 5 * time.Minute
	DefaultActiveDeadline   = time.Hour
	DefaultTTLAfterFinished = time.Hour
	DefaultImagePullPolicy  = "IfNotPresent"
	DefaultCacheSize        = "20Gi"
	DefaultWarmSchedule     = "17 3 * * *"
)

// Kubernetes is [runner.kubernetes]: where and how build-all's Jobs run,
// and what kiln render writes. Plain data; the runner turns it into
// Kubernetes objects.
type Kubernetes struct {
	Kubeconfig        string            // absolute; "" for in-cluster, then $KUBECONFIG, then ~/.kube/config
	Context           string            // kubeconfig context; "" for its current one
	Namespace         string            // "" for the context's namespace, else "default"
	Image             string            // kiln's own image (a multi-platform index)
	ImagePullPolicy   string            // Always, IfNotPresent (default) or Never
	ImagePullSecrets  []string          // Secret names
	ServiceAccount    string            // the build pods'; "" for the namespace's default
	NodeSelector      map[string]string // merged under the strict kubernetes.io/os and kubernetes.io/arch
	Tolerations       []Toleration      // added to every build pod
	Requests, Limits  map[string]string // cpu, memory, ephemeral-storage: Kubernetes quantities
	Labels            map[string]string // on every Job and pod
	Annotations       map[string]string // on every pod
	CredentialsSecret string            // a kubernetes.io/dockerconfigjson Secret mounted as the pods' Docker config
	CacheClaim        string            // PVC holding the warm cache; "" for an emptyDir filled by a warm init container
	CacheSize         string            // the rendered PVC's request; DefaultCacheSize
	StorageClass      string            // the rendered PVC's class; "" for the cluster's default
	ContextRepository string            // where build contexts are pushed; "" for each image's first tag's repository
	PendingTimeout    time.Duration     // a pod Pending longer fails its platform, with the reason
	ActiveDeadline    time.Duration     // a Job's activeDeadlineSeconds
	TTLAfterFinished  time.Duration     // a Job's ttlSecondsAfterFinished (for Jobs kiln does not delete itself)
	KeepFailed        bool              // leave failed Jobs (and pods) for debugging
	HostNetwork       bool              // pods share their node's network (clusters whose pod network cannot reach the registry)
	WarmSchedule      string            // the rendered CronJob's schedule
}

// Toleration is one toleration of the build pods.
type Toleration struct {
	Key, Operator, Value, Effect string
	Seconds                      *int64 // toleration_seconds, for NoExecute
}

// Kubernetes resource names, label keys and values, as the API server checks
// them (DNS-1123 subdomains and labels, qualified names).
var (
	dnsSubdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	labelName    = regexp.MustCompile(`^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`)
	quantity     = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?(m|[kMGTPE]i?|Ki|[eE][0-9]+)?$`)
)

// strictSelector are the node labels kiln sets itself on every build pod.
var strictSelector = []string{"kubernetes.io/os", "kubernetes.io/arch"}

// resourceNames are the resources a build pod may request or be limited to.
var resourceNames = []string{"cpu", "memory", "ephemeral-storage"}

func (v *validator) kubernetes(raw rawKube, kind string) Kubernetes {
	p := keyPath("runner", "kubernetes")
	k := Kubernetes{
		ImagePullPolicy: DefaultImagePullPolicy, CacheSize: DefaultCacheSize, WarmSchedule: DefaultWarmSchedule,
		PendingTimeout: DefaultPendingTimeout, ActiveDeadline: DefaultActiveDeadline, TTLAfterFinished: DefaultTTLAfterFinished,
	}
	if s, ok := v.nonEmpty(p.child("kubeconfig"), raw.Kubeconfig); ok {
		k.Kubeconfig = v.abs(s)
	}
	k.Context, _ = v.nonEmpty(p.child("context"), raw.Context)
	k.Namespace = v.kubeName(p.child("namespace"), raw.Namespace)
	k.ServiceAccount = v.kubeName(p.child("service_account"), raw.ServiceAccount)
	k.CredentialsSecret = v.kubeName(p.child("credentials_secret"), raw.CredentialsSecret)
	k.CacheClaim = v.kubeName(p.child("cache_claim"), raw.CacheClaim)
	k.StorageClass = v.kubeName(p.child("storage_class"), raw.StorageClass)
	if s, ok := v.nonEmpty(p.child("image"), raw.Image); ok {
		if _, err := name.ParseReference(s); err != nil {
			v.add(p.child("image"), err, "invalid image reference %q: %v", s, err)
		}
		k.Image = s
	} else if !raw.Image.set && kind == "kubernetes" {
		v.addf(p.child("image"), `required with runner.kind = "kubernetes": kiln's own image (make image, then push it)`)
	}
	if s, ok := v.str(p.child("image_pull_policy"), raw.ImagePullPolicy); ok {
		if !slices.Contains([]string{"Always", "IfNotPresent", "Never"}, s) {
			v.addf(p.child("image_pull_policy"), `%q: want "Always", "IfNotPresent" or "Never"`, s)
		}
		k.ImagePullPolicy = s
	}
	if list, ok := v.strs(p.child("image_pull_secrets"), raw.ImagePullSecrets); ok {
		for i, s := range list {
			v.checkName(p.child("image_pull_secrets").at(i), s)
		}
		k.ImagePullSecrets = list
	}
	k.NodeSelector = v.strMap(p.child("node_selector"), raw.NodeSelector, func(key string) string {
		if slices.Contains(strictSelector, key) {
			return fmt.Sprintf("%s is set by kiln for each platform and cannot be overridden", key)
		}
		return checkLabelKey(key)
	})
	for key, val := range k.NodeSelector {
		if msg := checkLabelValue(val); msg != "" {
			v.addf(p.child("node_selector").child(key), "%s", msg)
		}
	}
	k.Labels = v.strMap(p.child("labels"), raw.Labels, checkLabelKey)
	for key, val := range k.Labels {
		if msg := checkLabelValue(val); msg != "" {
			v.addf(p.child("labels").child(key), "%s", msg)
		}
	}
	k.Annotations = v.strMap(p.child("annotations"), raw.Annotations, checkLabelKey)
	k.Requests = v.resources(p.child("requests"), raw.Requests)
	k.Limits = v.resources(p.child("limits"), raw.Limits)
	k.Tolerations = v.tolerations(p.child("tolerations"), raw.Tolerations)
	if s, ok := v.nonEmpty(p.child("cache_size"), raw.CacheSize); ok {
		if !quantity.MatchString(s) {
			v.addf(p.child("cache_size"), "invalid quantity %q: want a Kubernetes quantity such as \"50Gi\"", s)
		}
		k.CacheSize = s
	}
	if s, ok := v.nonEmpty(p.child("context_repository"), raw.ContextRepository); ok {
		if _, err := name.NewRepository(s); err != nil {
			v.add(p.child("context_repository"), err, "invalid repository %q: %v", s, err)
		}
		k.ContextRepository = s
	}
	k.PendingTimeout = v.optDuration(p.child("pending_timeout"), raw.PendingTimeout, k.PendingTimeout)
	k.ActiveDeadline = v.optDuration(p.child("active_deadline"), raw.ActiveDeadline, k.ActiveDeadline)
	k.TTLAfterFinished = v.optDuration(p.child("ttl_after_finished"), raw.TTLAfterFinished, k.TTLAfterFinished)
	k.KeepFailed = v.boolean(p.child("keep_failed"), raw.KeepFailed)
	k.HostNetwork = v.boolean(p.child("host_network"), raw.HostNetwork)
	if s, ok := v.nonEmpty(p.child("warm_schedule"), raw.WarmSchedule); ok {
		if len(strings.Fields(s)) != 5 && !strings.HasPrefix(s, "@") {
			v.addf(p.child("warm_schedule"), "%q: want a cron schedule of five fields, such as %q", s, DefaultWarmSchedule)
		}
		k.WarmSchedule = s
	}
	return k
}

// kubeName reads an optional Kubernetes object name.
func (v *validator) kubeName(p path, x value) string {
	s, ok := v.nonEmpty(p, x)
	if ok {
		v.checkName(p, s)
	}
	return s
}

func (v *validator) checkName(p path, s string) {
	if len(s) > 253 || !dnsSubdomain.MatchString(s) {
		v.addf(p, "invalid name %q: want lower-case letters, digits, '-' and '.', starting and ending with a letter or digit", s)
	}
}

// optDuration reads a positive duration, def if unset.
func (v *validator) optDuration(p path, x value, def time.Duration) time.Duration {
	s, ok := v.str(p, x)
	if !ok {
		return def
	}
	return v.duration(p, s)
}

// resources reads requests or limits.
func (v *validator) resources(p path, m map[string]value) map[string]string {
	out := v.strMap(p, m, func(k string) string {
		if !slices.Contains(resourceNames, k) {
			return fmt.Sprintf("unknown resource %q (want cpu, memory or ephemeral-storage)", k)
		}
		return ""
	})
	for k, q := range out {
		if !quantity.MatchString(q) {
			v.addf(p.child(k), "invalid quantity %q: want a Kubernetes quantity such as \"2\", \"500m\" or \"4Gi\"", q)
		}
	}
	return out
}

// tolerations reads an array of tables {key, operator, value, effect,
// toleration_seconds}.
func (v *validator) tolerations(p path, x value) []Toleration {
	if !x.set {
		return nil
	}
	list, ok := x.v.([]map[string]any)
	if !ok {
		if anys, isArr := x.v.([]any); isArr {
			for _, e := range anys {
				m, isMap := e.(map[string]any)
				if !isMap {
					v.addf(p, "want an array of tables {key, operator, value, effect}, got an array holding %s", typeName(e))
					return nil
				}
				list = append(list, m)
			}
		} else {
			v.addf(p, "want an array of tables {key, operator, value, effect}, got %s", typeName(x.v))
			return nil
		}
	}
	out := make([]Toleration, 0, len(list))
	for i, m := range list {
		if t, ok := v.toleration(p.at(i), m); ok {
			out = append(out, t)
		}
	}
	return out
}

func (v *validator) toleration(p path, m map[string]any) (Toleration, bool) {
	var t Toleration
	ok := true
	for _, k := range sortedKeys(m) {
		val := m[k]
		if k == "toleration_seconds" {
			n, isInt := val.(int64)
			if !isInt {
				v.addf(p, "toleration_seconds: want an integer, got %s", typeName(val))
				ok = false
			}
			t.Seconds = &n
			continue
		}
		s, isStr := val.(string)
		if !isStr {
			v.addf(p, "%s: want a string, got %s", k, typeName(val))
			ok = false
			continue
		}
		switch k {
		case "key":
			t.Key = s
		case "operator":
			t.Operator = s
		case "value":
			t.Value = s
		case "effect":
			t.Effect = s
		default:
			v.addf(p, "unknown key %q (want key, operator, value, effect, toleration_seconds)", k)
			ok = false
		}
	}
	if t.Operator != "" && t.Operator != "Equal" && t.Operator != "Exists" {
		v.addf(p, `operator %q: want "Equal" or "Exists"`, t.Operator)
		ok = false
	}
	if t.Operator == "Exists" && t.Value != "" {
		v.addf(p, `operator "Exists" takes no value`)
		ok = false
	}
	if t.Effect != "" && !slices.Contains([]string{"NoSchedule", "PreferNoSchedule", "NoExecute"}, t.Effect) {
		v.addf(p, `effect %q: want "NoSchedule", "PreferNoSchedule" or "NoExecute"`, t.Effect)
		ok = false
	}
	if t.Key == "" && t.Operator != "Exists" {
		v.addf(p, `a toleration without a key must have operator "Exists"`)
		ok = false
	}
	return t, ok
}

// checkLabelKey checks a label or annotation key: an optional DNS prefix
// and a name.
func checkLabelKey(k string) string {
	prefix, nm, hasPrefix := strings.Cut(k, "/")
	if !hasPrefix {
		nm, prefix = prefix, ""
	}
	if hasPrefix && (len(prefix) > 253 || !dnsSubdomain.MatchString(prefix)) || len(nm) > 63 || !labelName.MatchString(nm) {
		return fmt.Sprintf("invalid key %q: want [prefix/]name, name up to 63 letters, digits, '-', '_' or '.'", k)
	}
	return ""
}

func checkLabelValue(s string) string {
	if s != "" && (len(s) > 63 || !labelName.MatchString(s)) {
		return fmt.Sprintf("invalid label value %q: up to 63 letters, digits, '-', '_' or '.'", s)
	}
	return ""
}

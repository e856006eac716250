package kube

import "time"

// Paths inside kiln's pods.
const (
	CacheMount       = "/cache"       // the warm cache volume
	DockerConfigDir  = "/kiln/docker" // the credentials Secret, as config.json
	WorkMount        = "/kiln/work"   // scratch space for stage filesystems and layers
	TerminationPath  = "/dev/termination-log"
	buildContainer   = "build"
	warmContainer    = "warm"
	defaultNamespace = "default"
)

// Labels kiln puts on what it creates; the coordinator finds its Jobs by them.
const (
	LabelBuildID   = "kiln.dev/build-id"
	LabelImage     = "kiln.dev/image"
	LabelPlatform  = "kiln.dev/platform"
	LabelComponent = "app.kubernetes.io/component"
	LabelName      = "app.kubernetes.io/name"
	LabelManagedBy = "app.kubernetes.io/managed-by"
)

// Options are [runner.kubernetes] of build.toml as plain data: what every
// object kiln creates or renders is made from.
type Options struct {
	Namespace         string // "" is "default"
	Image             string // kiln's own image
	ImagePullPolicy   string // "" is IfNotPresent
	ImagePullSecrets  []string
	ServiceAccount    string // the build pods'
	NodeSelector      map[string]string
	Tolerations       []Toleration
	Requests, Limits  map[string]string
	Labels            map[string]string
	Annotations       map[string]string
	CredentialsSecret string
	CacheClaim        string
	CacheSize         string
	StorageClass      string
	ActiveDeadline    time.Duration
	TTLAfterFinished  time.Duration
	WarmSchedule      string
	// Insecure lists the registries the pods reach over plain HTTP.
	Insecure []string
	// SkipTLSVerify lists the registries the pods reach over TLS without
	// checking their certificates.
	SkipTLSVerify []string
	// HostNetwork puts the pods on their node's network: for clusters
	// whose pod network cannot reach the registry (a test cluster).
	HostNetwork bool
	// LayerCache is the build pods' layer cache (kiln build --cache), in a
	// registry repository: pods share no disk.
	LayerCache LayerCache
}

// LayerCache is kiln build's --cache flags for the build pods.
type LayerCache struct {
	On   bool
	Repo string // "" is the image's repository + "/cache", as kaniko infers it
	TTL  time.Duration
	// NoCopyLayers and NoRunLayers: --cache-copy-layers=false,
	// --cache-run-layers=false.
	NoCopyLayers, NoRunLayers bool
}

// args are the flags for a build pushing to repository.
func (c LayerCache) args(repository string) []string {
	if !c.On {
		return nil
	}
	repo := c.Repo
	if repo == "" {
		repo = repository + "/cache"
	}
	out := []string{"--cache", "--cache-repo", repo}
	if c.TTL > 0 {
		out = append(out, "--cache-ttl", c.TTL.String())
	}
	if c.NoCopyLayers {
		out = append(out, "--cache-copy-layers=false")
	}
	if c.NoRunLayers {
		out = append(out, "--cache-run-layers=false")
	}
	return out
}

// Toleration is one toleration of the build pods.
type Toleration struct {
	Key, Operator, Value, Effect string
	Seconds                      *int64
}

func (o Options) namespace() string {
	if o.Namespace == "" {
		return defaultNamespace
	}
	return o.Namespace
}

package config

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	specs "github.com/opencontainers/image-spec/specs-go/v1"

	"kiln/platform"
)

// okImage is a valid image table for tests about the other tables.
const okImage = `
[images.ok]
context = "."
platforms = ["amd64"]
tags = ["example.com/ok:1"]
`

func plats(ss ...string) []specs.Platform {
	out := make([]specs.Platform, len(ss))
	for i, s := range ss {
		out[i] = platform.MustParse(s)
	}
	return out
}

func TestLoadFull(t *testing.T) {
	cfg, err := Load("testdata/full.toml")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		File:  filepath.Join(dir, "full.toml"),
		Dir:   dir,
		Cache: Cache{Dir: "/var/cache/kiln", MaxAge: 24 * time.Hour, Jobs: 8},
		Registries: map[string]Registry{
			"127.0.0.1:5000": {Insecure: true},
			"docker.io":      {Mirrors: []string{"mirror.gcr.io"}},
			"registry.internal:8443": {CA: filepath.Join(dir, "certs/ca.pem"),
				ClientCert: "/etc/kiln/client.pem", ClientKey: "/etc/kiln/client-key.pem"},
			"staging.example.com": {SkipTLSVerify: true},
		},
		Warm: Warm{Platforms: plats("linux/amd64", "linux/arm64"), Extra: []string{"busybox:1.36"}},
		Images: map[string]Image{"api": {
			Name:              "api",
			Context:           filepath.Join(dir, "api"),
			Dockerfile:        "Dockerfile",
			Target:            "runtime",
			Platforms:         plats("linux/amd64", "linux/arm64"),
			OptionalPlatforms: plats("linux/s390x"),
			Tags:              []string{"registry.example.com/acme/api:1.4.2", "registry.example.com/acme/api:latest"},
			Args:              map[string]string{"VERSION": "1.4.2"},
			Labels:            map[string]string{"org.opencontainers.image.source": "https://example.com/acme/api"},
		}},
		Runner: Runner{Kind: "local", Kubernetes: defaultKube()},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("Load(full.toml) =\n%#v\nwant\n%#v", cfg, want)
	}
	if got := cfg.ImageNames(); !reflect.DeepEqual(got, []string{"api"}) {
		t.Errorf("ImageNames() = %q", got)
	}
}

func TestDefaults(t *testing.T) {
	cfg, err := Parse([]byte(okImage), "")
	if err != nil {
		t.Fatal(err)
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Dir:   wd,
		Cache: Cache{MaxAge: DefaultMaxAge, Jobs: DefaultJobs},
		Images: map[string]Image{"ok": {
			Name:       "ok",
			Context:    wd,
			Dockerfile: "Dockerfile",
			Platforms:  plats("linux/amd64"),
			Tags:       []string{"example.com/ok:1"},
		}},
		Runner: Runner{Kind: "local", Kubernetes: defaultKube()},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("Parse(minimal) =\n%#v\nwant\n%#v", cfg, want)
	}
	if cfg.Warm.Platforms != nil {
		t.Errorf("Warm.Platforms = %v, want nil when unset", cfg.Warm.Platforms)
	}
}

func TestPaths(t *testing.T) {
	root := t.TempDir()
	file := filepath.Join(root, "proj", "build.toml")
	dir := filepath.Dir(file)
	tests := []struct {
		name       string
		context    string
		output     string
		cacheDir   string
		wantCtx    string
		wantOutput string
		wantCache  string
		allow      []string // AllowPathsUnder
	}{
		{name: "relative folder", context: "./api", output: "oci:out", cacheDir: "cache",
			wantCtx: dir + "/api", wantOutput: "oci:" + dir + "/out", wantCache: dir + "/cache"},
		{name: "parent folder", context: "../shared", output: "tar:../img.tar", cacheDir: "../c",
			wantCtx: root + "/shared", wantOutput: "tar:" + root + "/img.tar", wantCache: root + "/c", allow: []string{root}},
		{name: "absolute", context: "/src/api", output: "oci:/out/", cacheDir: "/var/cache//kiln",
			wantCtx: "/src/api", wantOutput: "oci:/out", wantCache: "/var/cache/kiln", allow: []string{"/src", "/out"}},
		{name: "tarball", context: "ctx.tar.gz", output: "tar:x.tar", cacheDir: ".",
			wantCtx: dir + "/ctx.tar.gz", wantOutput: "tar:" + dir + "/x.tar", wantCache: dir},
		{name: "stdin", context: "-", output: "oci:o", cacheDir: "c",
			wantCtx: "-", wantOutput: "oci:" + dir + "/o", wantCache: dir + "/c"},
		{name: "git ssh", context: "git@github.com:acme/api.git#main:sub", output: "oci:o", cacheDir: "c",
			wantCtx: "git@github.com:acme/api.git#main:sub", wantOutput: "oci:" + dir + "/o", wantCache: dir + "/c"},
		{name: "git https", context: "https://github.com/acme/api.git", output: "oci:o", cacheDir: "c",
			wantCtx: "https://github.com/acme/api.git", wantOutput: "oci:" + dir + "/o", wantCache: dir + "/c"},
		{name: "git https ref", context: "https://example.com/acme/api.git#v1:docker", output: "oci:o", cacheDir: "c",
			wantCtx: "https://example.com/acme/api.git#v1:docker", wantOutput: "oci:" + dir + "/o", wantCache: dir + "/c"},
		{name: "git scheme", context: "git://example.com/acme/api", output: "oci:o", cacheDir: "c",
			wantCtx: "git://example.com/acme/api", wantOutput: "oci:" + dir + "/o", wantCache: dir + "/c"},
		{name: "ssh scheme", context: "ssh://git@example.com/acme/api", output: "oci:o", cacheDir: "c",
			wantCtx: "ssh://git@example.com/acme/api", wantOutput: "oci:" + dir + "/o", wantCache: dir + "/c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := "[cache]\ndir = '" + tt.cacheDir + "'\n[images.x]\ncontext = '" + tt.context +
				"'\nplatforms = ['amd64']\noutput = '" + tt.output + "'\n"
			cfg, err := Parse([]byte(src), file, AllowPathsUnder(tt.allow...))
			if err != nil {
				t.Fatal(err)
			}
			img := cfg.Images["x"]
			if cfg.File != file || cfg.Dir != dir {
				t.Errorf("File, Dir = %q, %q; want %q, %q", cfg.File, cfg.Dir, file, dir)
			}
			if img.Context != tt.wantCtx {
				t.Errorf("Context = %q, want %q", img.Context, tt.wantCtx)
			}
			if img.Output != tt.wantOutput {
				t.Errorf("Output = %q, want %q", img.Output, tt.wantOutput)
			}
			if cfg.Cache.Dir != tt.wantCache {
				t.Errorf("Cache.Dir = %q, want %q", cfg.Cache.Dir, tt.wantCache)
			}
		})
	}
}

func TestValid(t *testing.T) {
	tests := []struct {
		name  string
		src   string
		check func(*Config) bool
	}{
		{"platform aliases normalised", "[warm]\nplatforms = ['aarch64', 'linux/arm/v7', 'x86_64']\n" + okImage,
			func(c *Config) bool {
				return platform.FormatAll(c.Warm.Platforms) == "linux/arm64,linux/arm/v7,linux/amd64"
			}},
		{"duration in minutes", "[cache]\nmax_age = '90m'\n" + okImage,
			func(c *Config) bool { return c.Cache.MaxAge == 90*time.Minute }},
		{"jobs at the limits", "[cache]\njobs = 256\n" + okImage,
			func(c *Config) bool { return c.Cache.Jobs == 256 }},
		{"kubernetes runner", "[runner]\nkind = 'kubernetes'\nkubernetes.image = 'registry.example.com/tools/kiln:1.0'\n" + okImage,
			func(c *Config) bool { return c.Runner.Kind == "kubernetes" }},
		{"kubernetes runner in full", "[runner]\nkind = 'kubernetes'\n" + fullKube + okImage,
			func(c *Config) bool {
				k := c.Runner.Kubernetes
				return k.Namespace == "ci" && k.Kubeconfig == filepath.Join(c.Dir, "kube/config") && k.Context == "ci-cluster" &&
					k.Image == "registry.example.com/tools/kiln:1.0" && k.ServiceAccount == "kiln-builder" &&
					k.NodeSelector["node-pool"] == "builders" && len(k.Tolerations) == 2 && k.Tolerations[0].Effect == "NoSchedule" &&
					*k.Tolerations[1].Seconds == 60 && k.Requests["cpu"] == "2" && k.Limits["memory"] == "8Gi" &&
					k.CredentialsSecret == "regcred" && k.CacheClaim == "kiln-cache" && k.PendingTimeout == 2*time.Minute &&
					k.ActiveDeadline == 30*time.Minute && k.TTLAfterFinished == time.Hour && k.KeepFailed &&
					k.ImagePullPolicy == "Always" && k.ImagePullSecrets[0] == "pull" && k.Labels["team"] == "platform" &&
					k.Annotations["example.com/owner"] == "release" && k.ContextRepository == "registry.example.com/ci/contexts" &&
					k.CacheSize == "50Gi" && k.StorageClass == "nfs" && k.WarmSchedule == "0 4 * * *"
			}},
		{"tolerations as an array of tables", "[[runner.kubernetes.tolerations]]\nkey = 'arch'\nvalue = 'arm64'\neffect = 'NoSchedule'\n[[runner.kubernetes.tolerations]]\noperator = 'Exists'\n" + okImage,
			func(c *Config) bool {
				t := c.Runner.Kubernetes.Tolerations
				return len(t) == 2 && t[0].Value == "arm64" && t[1].Operator == "Exists"
			}},
		{"mirror with path prefix", "[registries.'docker.io']\nmirrors = ['harbor.local:8443/proxy/hub', 'mirror.gcr.io']\n" + okImage,
			func(c *Config) bool { return len(c.Registries["docker.io"].Mirrors) == 2 }},
		{"output without tags", "[images.x]\ncontext = '.'\nplatforms = ['amd64']\noutput = 'oci:out'\n",
			func(c *Config) bool { return c.Images["x"].Tags == nil }},
		{"tag without a tag defaults to latest", "[images.x]\ncontext = '.'\nplatforms = ['amd64']\ntags = ['localhost:5000/x']\n",
			func(c *Config) bool { return c.Images["x"].Tags[0] == "localhost:5000/x" }},
		{"dockerfile in a subfolder", "[images.x]\ncontext = '.'\ndockerfile = 'docker/../build/Dockerfile.prod'\nplatforms = ['amd64']\noutput = 'tar:x.tar'\n",
			func(c *Config) bool { return c.Images["x"].Dockerfile == "docker/../build/Dockerfile.prod" }},
		{"empty optional platforms", "[images.x]\ncontext = '.'\nplatforms = ['amd64']\noptional_platforms = []\noutput = 'tar:x.tar'\n",
			func(c *Config) bool { return len(c.Images["x"].OptionalPlatforms) == 0 }},
		{"upper-case stage", okImage + "target = 'Build-Env'\n",
			func(c *Config) bool { return c.Images["ok"].Target == "Build-Env" }},
		{"dotted keys and inline tables", "cache.jobs = 3\nimages.y = { context = '.', platforms = ['arm64'], tags = ['y'] }\n",
			func(c *Config) bool { return c.Cache.Jobs == 3 && c.Images["y"].Context != "" }},
		{"BOM", "\uFEFF" + okImage, func(c *Config) bool { return len(c.Images) == 1 }},
		{"several images sorted", okImage + "[images.a]\ncontext = '-'\nplatforms = ['arm64']\ntags = ['a']\n",
			func(c *Config) bool { return reflect.DeepEqual(c.ImageNames(), []string{"a", "ok"}) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tt.src), "build.toml")
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(cfg) {
				t.Errorf("unexpected config: %#v", cfg)
			}
		})
	}
}

// defaultKube is [runner.kubernetes] when build.toml leaves it out.
func defaultKube() Kubernetes {
	return Kubernetes{
		ImagePullPolicy: DefaultImagePullPolicy, CacheSize: DefaultCacheSize, WarmSchedule: DefaultWarmSchedule,
		PendingTimeout: DefaultPendingTimeout, ActiveDeadline: DefaultActiveDeadline, TTLAfterFinished: DefaultTTLAfterFinished,
	}
}

// fullKube sets every key of [runner.kubernetes].
const fullKube = `[runner.kubernetes]
kubeconfig = "kube/config"
context = "ci-cluster"
namespace = "ci"
image = "registry.example.com/tools/kiln:1.0"
image_pull_policy = "Always"
image_pull_secrets = ["pull"]
service_account = "kiln-builder"
node_selector = { "node-pool" = "builders" }
tolerations = [{ key = "arch", value = "arm64", effect = "NoSchedule" }, { key = "spot", operator = "Exists", effect = "NoExecute", toleration_seconds = 60 }]
requests = { cpu = "2", memory = "4Gi", ephemeral-storage = "20Gi" }
limits = { memory = "8Gi" }
labels = { team = "platform" }
annotations = { "example.com/owner" = "release" }
credentials_secret = "regcred"
cache_claim = "kiln-cache"
cache_size = "50Gi"
storage_class = "nfs"
context_repository = "registry.example.com/ci/contexts"
pending_timeout = "2m"
active_deadline = "30m"
ttl_after_finished = "1h"
keep_failed = true
warm_schedule = "0 4 * * *"
`

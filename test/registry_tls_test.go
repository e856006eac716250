package test

import (
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"kiln/test/harness"
)

// hostPlatform is what kiln build builds when told nothing.
var hostPlatform = "linux/" + runtime.GOARCH

// imageLayout writes an image for spec into a new OCI layout, its one
// entry, for kiln push.
func imageLayout(t *testing.T, spec harness.ImageSpec) string {
	t.Helper()
	img, err := harness.Image(spec)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "app"})); err != nil {
		t.Fatal(err)
	}
	return dir
}

// mustSay fails the test unless kiln's output holds every one of want.
func mustSay(t *testing.T, r result, want ...string) {
	t.Helper()
	t.Logf("kiln said: %s", strings.TrimSpace(r.output()))
	for _, w := range want {
		if !strings.Contains(r.output(), w) {
			t.Errorf("output lacks %q:\n%s", w, r)
		}
	}
}

// headTLS resolves ref on a TLS registry the way a well-configured client
// does, to check what kiln pushed.
func headTLS(t *testing.T, ref string, pki *harness.TLSFiles) string {
	t.Helper()
	conf, err := pki.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Head(r, remote.WithContext(t.Context()), remote.WithTransport(&http.Transport{TLSClientConfig: conf}))
	if err != nil {
		t.Fatalf("%s is not in the registry: %v", ref, err)
	}
	return desc.Digest.String()
}

// TestPushTLS: a push to a registry whose certificate kiln cannot verify
// fails at once, says x509 and how to fix it, and exits 1; the registry's
// CA (--registry-certificate) or not checking (--skip-tls-verify-registry,
// --skip-tls-verify) makes it work.
func TestPushTLS(t *testing.T) {
	t.Parallel()
	reg, pki := harness.NewTLSRegistry(t, false)
	src := imageLayout(t, harness.ImageSpec{Platform: "linux/amd64", Layers: layers(7101, 2, 64<<10)})
	dest := reg.Ref("tls/pushed:1")

	r := runKiln(t, "push", "--from", "oci:"+src, "--retries", "5", dest)
	mustExit(t, r, 1)
	mustSay(t, r, "x509", "certificate signed by unknown authority", "--registry-certificate "+reg.Addr+"=", "--skip-tls-verify-registry "+reg.Addr)
	if strings.Contains(r.output(), "retrying") {
		t.Errorf("an untrusted certificate was retried:\n%s", r)
	}

	for _, tt := range []struct {
		name  string
		flags []string
	}{
		{"the registry's CA", []string{"--registry-certificate", reg.Addr + "=" + pki.CA}},
		{"not verified for this registry", []string{"--skip-tls-verify-registry", reg.Addr}},
		{"not verified for every push", []string{"--skip-tls-verify"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := runKiln(t, append(append([]string{"push", "--from", "oci:" + src}, tt.flags...), dest)...)
			mustExit(t, r, 0)
			mustSay(t, r, "pushed "+dest)
		})
	}
	headTLS(t, dest, pki)
}

// TestMTLS: a registry that wants a client certificate refuses kiln
// without one, clearly, and takes a push and an index made from what it
// holds with --registry-client-cert (and the CA from build.toml).
func TestMTLS(t *testing.T) {
	t.Parallel()
	reg, pki := harness.NewTLSRegistry(t, true)
	src := imageLayout(t, harness.ImageSpec{Platform: "linux/arm64", Layers: layers(7201, 1, 32<<10)})
	dest := reg.Ref("mtls/app:1")
	ca := []string{"--registry-certificate", reg.Addr + "=" + pki.CA}
	clientCert := []string{"--registry-client-cert", reg.Addr + "=" + pki.ClientCert + "," + pki.ClientKey}

	r := runKiln(t, append(append([]string{"push", "--from", "oci:" + src}, ca...), dest)...)
	mustExit(t, r, 1)
	mustSay(t, r, "remote error: tls: ", "asks for a client certificate", "--registry-client-cert "+reg.Addr+"=")

	r = runKiln(t, append(append(append([]string{"push", "--from", "oci:" + src}, ca...), clientCert...), dest)...)
	mustExit(t, r, 0)

	// index create reads the source and pushes the index: both ways over
	// mTLS, the CA from build.toml this time.
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"build.toml": `
[registries."` + reg.Addr + `"]
ca = "` + pki.CA + `"
`})
	r = runKiln(t, append(append([]string{"index", "create", "--config", filepath.Join(dir, "build.toml"), "--tag", reg.Ref("mtls/multi:1")}, clientCert...), dest)...)
	mustExit(t, r, 0)
	headTLS(t, reg.Ref("mtls/multi:1"), pki)
}

// TestWarmAndBuildFromTLS: warm and build read a base image from a TLS
// registry they are given the CA of (a flag for warm, build.toml's ca for
// build, which also pushes there).
func TestWarmAndBuildFromTLS(t *testing.T) {
	t.Parallel()
	reg, pki := harness.NewTLSRegistry(t, false)
	base := reg.Ref("tls/base:1")
	if _, err := harness.PushImageTLS(t.Context(), base, harness.ImageSpec{Platform: hostPlatform, Layers: layers(7301, 2, 64<<10)}, pki); err != nil {
		t.Fatal(err)
	}

	t.Run("warm", func(t *testing.T) {
		cache := filepath.Join(t.TempDir(), "cache")
		warm := []string{"warm", "--cache-dir", cache, "--image", base, "--platform", hostPlatform}
		r := runKiln(t, warm...)
		mustExit(t, r, 1)
		mustSay(t, r, "x509")
		r = runKiln(t, append(warm, "--registry-certificate", reg.Addr+"="+pki.CA)...)
		mustExit(t, r, 0)
		verifyCache(t, cache)
	})

	t.Run("build", func(t *testing.T) {
		dir := t.TempDir()
		writeFiles(t, dir, map[string]string{
			"build.toml": `
[registries."` + reg.Addr + `"]
ca = "pki/ca.pem"

[images.app]
context = "."
platforms = ["` + hostPlatform + `"]
tags = ["` + reg.Ref("tls/built:1") + `"]
`,
			"Dockerfile": "FROM " + base + "\nCOPY hello.txt /hello.txt\n",
			"hello.txt":  "hello over TLS\n",
		})
		if err := os.MkdirAll(filepath.Join(dir, "pki"), 0o755); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(pki.CA)
		if err != nil {
			t.Fatal(err)
		}
		writeFiles(t, dir, map[string]string{"pki/ca.pem": string(data)})
		r := runKiln(t, "build", "--config", filepath.Join(dir, "build.toml"), "--cache-dir", filepath.Join(t.TempDir(), "empty-cache"), "app")
		mustExit(t, r, 0)
		mustSay(t, r, "pushed "+reg.Ref("tls/built:1"))
		headTLS(t, reg.Ref("tls/built:1"), pki)
	})
}

// TestRegistryMirrorFlags: --registry-map and --registry-mirror send pulls
// to a mirror first (the origin is never asked for what the mirror has),
// with or without a path prefix; --skip-default-registry-fallback makes an
// image the mirror lacks an error instead of a pull from the origin.
func TestRegistryMirrorFlags(t *testing.T) {
	t.Parallel()
	origin, mirror := harness.NewRegistry(t), harness.NewRegistry(t)
	originProxy, originLog := newCountingProxy(t, origin.Addr)
	mirrorProxy, mirrorLog := newCountingProxy(t, mirror.Addr)
	spec := func(seed int64) harness.ImageSpec {
		return harness.ImageSpec{Platform: hostPlatform, Layers: layers(seed, 2, 64<<10)}
	}
	pushImage(t, mirror.Ref("acme/app:1"), spec(7401))
	pushImage(t, mirror.Ref("hub/acme/app:2"), spec(7411))
	pushImage(t, mirror.Ref("library/kiln-mirror-test:1"), spec(7421))
	pushImage(t, origin.Ref("acme/only:1"), spec(7431))

	warm := func(t *testing.T, env []string, ref string, flags ...string) result {
		t.Helper()
		originLog.reset()
		mirrorLog.reset()
		args := append([]string{"warm", "--cache-dir", filepath.Join(t.TempDir(), "cache"), "--platform", hostPlatform, "--image", ref}, flags...)
		return runKilnOpts(t, runOpts{env: env}, args...)
	}
	originAsked := func() int {
		return originLog.count(http.MethodGet, anyManifest) + originLog.count(http.MethodHead, anyManifest) + originLog.count(http.MethodGet, anyBlob)
	}
	for _, tt := range []struct {
		name  string
		env   []string
		ref   string
		flags []string
	}{
		{name: "registry-map", ref: originProxy.Addr + "/acme/app:1", flags: []string{"--registry-map", originProxy.Addr + "=" + mirrorProxy.Addr}},
		{name: "registry-map with a path", ref: originProxy.Addr + "/acme/app:2", flags: []string{"--registry-map", "quay.io=q.example.com;" + originProxy.Addr + "=" + mirrorProxy.Addr + "/hub"}},
		{name: "registry-mirror for Docker Hub", ref: "kiln-mirror-test:1", flags: []string{"--registry-mirror", mirrorProxy.Addr, "--skip-default-registry-fallback"}},
		{name: "KANIKO_REGISTRY_MIRROR", env: []string{"KANIKO_REGISTRY_MIRROR=" + mirrorProxy.Addr}, ref: "docker.io/library/kiln-mirror-test:1", flags: []string{"--skip-default-registry-fallback"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := warm(t, tt.env, tt.ref, tt.flags...)
			mustExit(t, r, 0)
			if n := originAsked(); n != 0 {
				t.Errorf("the origin served %d manifest or blob requests, want 0: %v", n, originLog.all())
			}
			if n := mirrorLog.count(http.MethodGet, anyBlob); n < 2 {
				t.Errorf("the mirror served %d blob GETs, want every layer: %v", n, mirrorLog.all())
			}
		})
	}

	t.Run("fallback to the origin", func(t *testing.T) {
		r := warm(t, nil, originProxy.Addr+"/acme/only:1", "--registry-map", originProxy.Addr+"="+mirrorProxy.Addr)
		mustExit(t, r, 0)
		if originAsked() == 0 {
			t.Errorf("the origin was not asked for what the mirror lacks: %v", originLog.all())
		}
	})

	t.Run("no fallback", func(t *testing.T) {
		r := warm(t, nil, originProxy.Addr+"/acme/only:1", "--registry-map", originProxy.Addr+"="+mirrorProxy.Addr, "--skip-default-registry-fallback")
		mustExit(t, r, 1)
		mustSay(t, r, "on its mirrors ("+mirrorProxy.Addr+"; "+originProxy.Addr+" itself is not asked")
		if n := originAsked(); n != 0 {
			t.Errorf("the origin served %d requests despite --skip-default-registry-fallback: %v", n, originLog.all())
		}
	})

	t.Run("build", func(t *testing.T) {
		dir := t.TempDir()
		writeFiles(t, dir, map[string]string{
			"Dockerfile": "FROM kiln-mirror-test:1\nCOPY a.txt /a.txt\n",
			"a.txt":      "from the mirror\n",
		})
		out := filepath.Join(t.TempDir(), "out")
		r := runKiln(t, "build", "--context", dir, "--no-push", "--output", "oci:"+out, "--cache-dir", filepath.Join(t.TempDir(), "cache"),
			"--registry-mirror", mirrorProxy.Addr, "--skip-default-registry-fallback")
		mustExit(t, r, 0)
		layoutImage(t, out, "image")
	})
}

// TestRegistryFlagsBadValues: a registry flag or key of the wrong form, or
// naming a file that is missing or not what it should be, exits 2 naming
// the flag or key, before any work.
func TestRegistryFlagsBadValues(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pki, err := harness.WriteTLSFiles(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	writeFiles(t, dir, map[string]string{
		"build.toml":         "[images.x]\ncontext = \".\"\nplatforms = [\"linux/amd64\"]\noutput = \"oci:out\"\n",
		"bad-ca.toml":        "[registries.\"r.example.com\"]\nca = \"missing.pem\"\n",
		"half-client.toml":   "[registries.\"r.example.com\"]\nclient_cert = \"pki/client.pem\"\n",
		"swapped-pair.toml":  "[registries.\"r.example.com\"]\nclient_cert = \"pki/client-key.pem\"\nclient_key = \"pki/client.pem\"\n",
		"kube.toml":          "[runner]\nkind = \"kubernetes\"\nkubernetes.image = \"r.example.com/kiln:1\"\n[images.x]\ncontext = \".\"\nplatforms = [\"linux/amd64\"]\noutput = \"oci:out\"\n",
		"Dockerfile":         "FROM scratch\n",
		"layout/oci-layout":  `{"imageLayoutVersion":"1.0.0"}`,
		"layout/index.json":  `{"schemaVersion":2,"manifests":[]}`,
		"layout/blobs/.keep": "",
	})
	layoutDir := "oci:" + filepath.Join(dir, "layout")
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"build: CA missing", []string{"build", "--context", dir, "--no-push", "--registry-certificate", "r.example.com=" + missing}, "--registry-certificate r.example.com=" + missing + ": stat " + missing + ": no such file"},
		{"build: CA is a key", []string{"build", "--context", dir, "--no-push", "--registry-certificate", "r.example.com=" + pki.ClientKey}, `"PRIVATE KEY" PEM block where a CERTIFICATE belongs`},
		{"build: client cert without key", []string{"build", "--context", dir, "--no-push", "--registry-client-cert", "r.example.com=" + pki.ClientCert}, "--registry-client-cert r.example.com=" + pki.ClientCert + ": want HOST[:PORT]=CERT,KEY"},
		{"build-all: registry with a scheme", []string{"build-all", "--config", filepath.Join(dir, "build.toml"), "--skip-tls-verify-registry", "https://r.example.com"}, `--skip-tls-verify-registry "https://r.example.com": want HOST[:PORT] without a scheme`},
		{"warm: client key missing", []string{"warm", "--image", "r.example.com/a:1", "--registry-client-cert", "r.example.com=" + pki.ClientCert + "," + missing}, "--registry-client-cert r.example.com=" + pki.ClientCert + "," + missing + ": stat " + missing},
		{"warm: mirror with a scheme", []string{"warm", "--image", "busybox:1", "--registry-mirror", "https://mirror.gcr.io"}, `--registry-mirror "https://mirror.gcr.io": want HOST[:PORT][/PATH] without a scheme`},
		{"index create: map without =", []string{"index", "create", "--tag", "r.example.com/a:1", "--registry-map", "docker.io", "r.example.com/a:0"}, `--registry-map "docker.io"`},
		{"push: certificate without a file", []string{"push", "--from", layoutDir, "--registry-certificate", "r.example.com", "r.example.com/a:1"}, "--registry-certificate r.example.com: want HOST[:PORT]=FILE"},
		{"build.toml: ca missing", []string{"warm", "--config", filepath.Join(dir, "bad-ca.toml"), "--image", "r.example.com/a:1"}, `bad-ca.toml: registries."r.example.com".ca: stat ` + missing + ": no such file"},
		{"build.toml: client_cert alone", []string{"warm", "--config", filepath.Join(dir, "half-client.toml"), "--image", "r.example.com/a:1"}, `half-client.toml:2:15: registries."r.example.com".client_cert: client_cert without client_key`},
		{"build.toml: pair swapped", []string{"warm", "--config", filepath.Join(dir, "swapped-pair.toml"), "--image", "r.example.com/a:1"}, `swapped-pair.toml: registries."r.example.com".client_cert:`},
		{"build-all, Kubernetes runner: a CA its pods would not get", []string{"build-all", "--config", filepath.Join(dir, "kube.toml"), "--registry-certificate", "r.example.com=" + pki.CA}, "--registry-certificate: the Kubernetes runner's pods would not get it"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := runKiln(t, tt.args...)
			mustExit(t, r, 2)
			mustSay(t, r, tt.want)
		})
	}
}

package test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"kiln/test/harness"
)

// baMetadata is the JSON `kiln build-all --metadata-file` writes (the
// contract, spelled out here as any reader of the file would).
type baMetadata struct {
	Images []struct {
		Image       string   `json:"image"`
		IndexDigest string   `json:"index_digest"`
		MediaType   string   `json:"media_type"`
		Tags        []string `json:"tags"`
		Pushed      bool     `json:"pushed"`
		OCILayout   string   `json:"oci_layout"`
		RefName     string   `json:"ref_name"`
		Error       string   `json:"error"`
		Platforms   []struct {
			Platform string `json:"platform"`
			Required bool   `json:"required"`
			Status   string `json:"status"`
			Digest   string `json:"digest"`
			Size     int64  `json:"size"`
			Where    string `json:"where"`
			Mode     string `json:"mode"`
			Error    string `json:"error"`
		} `json:"platforms"`
	} `json:"images"`
}

// image is the metadata of one image: its index digest, and by platform
// its digest, status and error.
func (m baMetadata) image(t *testing.T, n string) (digest string, platforms map[string]string, statuses map[string]string, errs map[string]string) {
	t.Helper()
	for _, im := range m.Images {
		if im.Image != n {
			continue
		}
		platforms, statuses, errs = map[string]string{}, map[string]string{}, map[string]string{}
		for _, p := range im.Platforms {
			platforms[p.Platform], statuses[p.Platform], errs[p.Platform] = p.Digest, p.Status, p.Error
		}
		return im.IndexDigest, platforms, statuses, errs
	}
	t.Fatalf("metadata has no image %s", n)
	return
}

func baReadMetadata(t *testing.T, path string) baMetadata {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m baMetadata
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("%s: %v\n%s", path, err, data)
	}
	return m
}

// baGoBinaries cross-compiles a tiny Go program into dir/bin/<arch>/hello
// for each arch, as a COPY-only Dockerfile picks it up by TARGETARCH.
func baGoBinaries(t *testing.T, dir string, arches ...string) {
	t.Helper()
	src := t.TempDir()
	writeFiles(t, src, map[string]string{
		"go.mod":  "module hello\n\ngo 1.21\n",
		"main.go": "package main\n\nfunc main() { println(\"hello from kiln\") }\n",
	})
	for _, arch := range arches {
		cmd := exec.CommandContext(t.Context(), "go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(dir, "bin", arch, "hello"), ".")
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+arch, "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build for %s: %v\n%s", arch, err, out)
		}
	}
}

const baHelloDockerfile = `FROM scratch
ARG TARGETARCH
COPY bin/${TARGETARCH}/hello /hello
ENTRYPOINT ["/hello"]
`

// baProject writes a build.toml and its contexts into a new folder: "api",
// a Go program cross-compiled per TARGETARCH (FROM scratch), and "web",
// static files on a multi-platform base image that lacks ppc64le. The
// build.toml names the registry as addr (reg.Addr, or a proxy's).
func baProject(t *testing.T, reg *harness.Registry, addr, extra string) string {
	t.Helper()
	dir := t.TempDir()
	pushIndex(t, reg.Ref("base/alpine:1"),
		harness.ImageSpec{Platform: "linux/amd64", Layers: layers(10, 1, 8<<10)},
		harness.ImageSpec{Platform: "linux/arm64", Layers: layers(20, 1, 8<<10)},
		harness.ImageSpec{Platform: "linux/s390x", Layers: layers(30, 1, 8<<10)})
	baGoBinaries(t, filepath.Join(dir, "api"), "amd64", "arm64")
	writeFiles(t, dir, map[string]string{
		"api/Dockerfile": baHelloDockerfile,
		"web/Dockerfile": "FROM REGISTRY/base/alpine:1\nCOPY index.html /srv/index.html\n",
		"web/index.html": "<h1>hello</h1>\n",
		"build.toml": `[registries."REGISTRY"]
insecure = true

[images.api]
context = "api"
platforms = ["linux/amd64", "linux/arm64"]
tags = ["REGISTRY/acme/api:1", "REGISTRY/acme/api:latest", "REGISTRY/mirror/api:1"]
labels = { "org.opencontainers.image.source" = "https://example.com/acme/api" }

[images.web]
context = "web"
platforms = ["linux/amd64", "linux/arm64"]
optional_platforms = ["linux/s390x", "linux/ppc64le"]
tags = ["REGISTRY/acme/web:1"]
` + extra,
	}, "REGISTRY", addr)
	return dir
}

// TestBuildAll builds 2 images × 2–4 platforms into the registry: every
// tag holds the index, an optional platform the base lacks is dropped, the
// same inputs give the same index digest, and skopeo reads the index and
// picks the arm64 child.
func TestBuildAll(t *testing.T) {
	t.Parallel()
	reg := harness.NewRegistry(t)
	proxy, reqs := newCountingProxy(t, reg.Addr)
	dir := baProject(t, reg, proxy.Addr, "")
	cache := t.TempDir()
	md := filepath.Join(dir, "md1.json")
	r := runKilnOpts(t, runOpts{dir: dir, env: []string{"SOURCE_DATE_EPOCH=1700000000"}}, "build-all", "--cache-dir", cache, "--reproducible", "--metadata-file", md)
	mustExit(t, r, 0)
	for _, want := range []string{"[api linux/arm64] ", "[web linux/s390x] "} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr has no line prefixed %q:\n%s", want, r)
		}
	}
	m := baReadMetadata(t, md)

	apiIndex, apiPlatforms, apiStatus, _ := m.image(t, "api")
	if !baMapsEqual(apiStatus, map[string]string{"linux/amd64": "built", "linux/arm64": "built"}) {
		t.Errorf("api: %v", apiStatus)
	}
	webIndex, webPlatforms, webStatus, webErrs := m.image(t, "web")
	if !baMapsEqual(webStatus, map[string]string{"linux/amd64": "built", "linux/arm64": "built", "linux/s390x": "built", "linux/ppc64le": "dropped"}) {
		t.Errorf("web: %v", webStatus)
	}
	if !strings.Contains(webErrs["linux/ppc64le"], "ppc64le") || !strings.Contains(r.stdout, "dropped (optional)") {
		t.Errorf("the dropped platform is not reported: %q\n%s", webErrs["linux/ppc64le"], r)
	}
	// The platform images went to acme/api by digest; mirror/api mounted
	// their blobs from there.
	if n := reqs.count("PATCH", `^/v2/mirror/api/blobs/uploads/`) + reqs.count("PUT", `^/v2/mirror/api/blobs/uploads/`); n != 0 {
		t.Errorf("%d blob upload requests into mirror/api, want 0: every blob should be mounted", n)
	}
	if n := reqs.count("POST", `^/v2/mirror/api/blobs/uploads/$`); n == 0 {
		t.Error("no mount request into mirror/api")
	}
	for _, line := range []string{"index api " + apiIndex, "index web " + webIndex, "pushed " + proxy.Addr + "/mirror/api:1"} {
		if !strings.Contains(r.stdout, line) {
			t.Errorf("stdout does not say %q:\n%s", line, r.stdout)
		}
	}

	baWantIndex(t, reg.Ref("acme/api:1"), apiIndex, apiPlatforms)
	baWantIndex(t, reg.Ref("acme/api:latest"), apiIndex, apiPlatforms)
	baWantIndex(t, reg.Ref("mirror/api:1"), apiIndex, apiPlatforms)
	delete(webPlatforms, "linux/ppc64le")
	baWantIndex(t, reg.Ref("acme/web:1"), webIndex, webPlatforms)

	raw := idxSkopeoRaw(t, reg.Ref("acme/api:1"))
	if h, _, _ := v1.SHA256(strings.NewReader(raw)); h.String() != apiIndex {
		t.Errorf("skopeo inspect --raw: digest %s, want %s", h, apiIndex)
	}
	idxSkopeoPicks(t, reg.Ref("acme/api:1"), baHash(t, apiPlatforms["linux/arm64"]), "--override-arch", "arm64")
	idxSkopeoPicks(t, reg.Ref("acme/web:1"), baHash(t, webPlatforms["linux/s390x"]), "--override-arch", "s390x")

	// Again, from a fresh copy of the project: the same index digests.
	md2 := filepath.Join(dir, "md2.json")
	r = runKilnOpts(t, runOpts{dir: dir, env: []string{"SOURCE_DATE_EPOCH=1700000000"}}, "build-all", "--cache-dir", cache, "--reproducible", "--metadata-file", md2, "--jobs", "4")
	mustExit(t, r, 0)
	m2 := baReadMetadata(t, md2)
	if again, _, _, _ := m2.image(t, "api"); again != apiIndex {
		t.Errorf("api: second run made index %s, first %s", again, apiIndex)
	}
	if again, _, _, _ := m2.image(t, "web"); again != webIndex {
		t.Errorf("web: second run made index %s, first %s", again, webIndex)
	}
}

// TestBuildAllRequiredFails: an image whose required platform fails gets
// nothing under its tags, whether found up front (a RUN for arm64) or
// while building (a base without the platform; an x86-64 binary in an
// arm64 image); the other images are pushed; exit 1.
func TestBuildAllRequiredFails(t *testing.T) {
	t.Parallel()
	reg := harness.NewRegistry(t)
	dir := baProject(t, reg, reg.Addr, `
[images.nobase]
context = "web"
platforms = ["linux/amd64", "linux/ppc64le"]
tags = ["REGISTRY/acme/nobase:1"]

[images.needsnode]
context = "needsnode"
platforms = ["linux/amd64", "linux/arm64"]
tags = ["REGISTRY/acme/needsnode:1"]

[images.wrongarch]
context = "api"
dockerfile = "Dockerfile.wrong"
platforms = ["linux/amd64", "linux/arm64"]
tags = ["REGISTRY/acme/wrongarch:1"]
`)
	writeFiles(t, dir, map[string]string{
		"needsnode/Dockerfile": "FROM scratch AS build\nCOPY src /src\nRUN make\n\nFROM scratch\nCOPY --from=build /out /app\n",
		"needsnode/src":        "x\n",
		"api/Dockerfile.wrong": "FROM scratch\nCOPY bin/amd64/hello /usr/local/bin/hello\n",
	})
	md := filepath.Join(dir, "md.json")
	r := runKilnOpts(t, runOpts{dir: dir}, "build-all", "--cache-dir", t.TempDir(), "--metadata-file", md)
	mustExit(t, r, 1)
	wantMsg := `images.needsnode linux/arm64: stage "build" needs to run code (Dockerfile:3 RUN make): build it on an arm64 node (runner = "kubernetes") or pass --allow-emulation with a registered binfmt handler for arm64`
	for _, want := range []string{wantMsg, "/usr/local/bin/hello (x86-64, linux/amd64)", "images.nobase linux/ppc64le", "3 of 5 images failed: needsnode, nobase, wrongarch"} {
		if !strings.Contains(r.output(), want) {
			t.Errorf("output does not say %q:\n%s", want, r)
		}
	}
	if strings.Contains(r.stderr, "[needsnode ") {
		t.Errorf("needsnode was built although it fails up front:\n%s", r.stderr)
	}
	for _, tag := range []string{"acme/nobase:1", "acme/needsnode:1", "acme/wrongarch:1"} {
		idxAbsent(t, reg.Ref(tag))
	}
	m := baReadMetadata(t, md)
	for n, want := range map[string]map[string]string{
		"needsnode": {"linux/amd64": "skipped", "linux/arm64": "failed"},
		"nobase":    {"linux/amd64": "built|skipped", "linux/ppc64le": "failed"},
		"wrongarch": {"linux/amd64": "built|skipped", "linux/arm64": "failed"},
	} {
		digest, _, got, _ := m.image(t, n)
		if digest != "" {
			t.Errorf("%s: index digest %s, want none", n, digest)
		}
		for p, st := range want {
			if !slices.Contains(strings.Split(st, "|"), got[p]) {
				t.Errorf("%s %s: status %q, want %s", n, p, got[p], st)
			}
		}
	}
	apiIndex, apiPlatforms, _, _ := m.image(t, "api")
	baWantIndex(t, reg.Ref("acme/api:1"), apiIndex, apiPlatforms)
	if webIndex, _, _, _ := m.image(t, "web"); webIndex == "" {
		t.Error("web has no index: a failure elsewhere stopped it")
	}
}

// TestBuildAllOCILayout: with no tags (output = "oci:DIR"), --output, or
// --no-push (./out/<name>), the index goes into an OCI layout, filed under
// the image's name (its first tag with --no-push).
func TestBuildAllOCILayout(t *testing.T) {
	t.Parallel()
	reg := harness.NewRegistry(t)
	dir := baProject(t, reg, reg.Addr, `
[images.local]
context = "api"
platforms = ["linux/amd64", "linux/arm64"]
output = "oci:layouts/local"
`)
	cache := t.TempDir()
	r := runKilnOpts(t, runOpts{dir: dir}, "build-all", "--cache-dir", cache, "local")
	mustExit(t, r, 0)
	baWantLayout(t, filepath.Join(dir, "layouts", "local"), "local", "linux/amd64", "linux/arm64")

	r = runKilnOpts(t, runOpts{dir: dir}, "build-all", "--cache-dir", cache, "--no-push", "api")
	mustExit(t, r, 0)
	baWantLayout(t, filepath.Join(dir, "out", "api"), reg.Ref("acme/api:1"), "linux/amd64", "linux/arm64")
	idxAbsent(t, reg.Ref("acme/api:1"))

	r = runKilnOpts(t, runOpts{dir: dir}, "build-all", "--cache-dir", cache, "--no-push", "--output", "oci:"+filepath.Join(dir, "given"), "web")
	mustExit(t, r, 0)
	baWantLayout(t, filepath.Join(dir, "given"), reg.Ref("acme/web:1"), "linux/amd64", "linux/arm64", "linux/s390x")

	// From a warm cache, offline: the platforms warmed build, the optional
	// one that was not is dropped.
	r = runKilnOpts(t, runOpts{dir: dir}, "warm", "--cache-dir", cache, "--platform", "linux/amd64,linux/arm64")
	mustExit(t, r, 0)
	r = runKilnOpts(t, runOpts{dir: dir}, "build-all", "--cache-dir", cache, "--offline", "--no-push", "--output", "oci:"+filepath.Join(dir, "offline"), "web")
	mustExit(t, r, 0)
	baWantLayout(t, filepath.Join(dir, "offline"), reg.Ref("acme/web:1"), "linux/amd64", "linux/arm64")
	if !strings.Contains(r.stdout, "not in the cache and the build is offline") {
		t.Errorf("the offline miss is not reported:\n%s", r)
	}
}

// TestBuildAllPlan: --plan says what would be built where and why, builds
// nothing, and exits 1 when something would fail up front.
func TestBuildAllPlan(t *testing.T) {
	t.Parallel()
	reg := harness.NewRegistry(t)
	dir := baProject(t, reg, reg.Addr, `
[images.needsnode]
context = "needsnode"
platforms = ["linux/amd64"]
optional_platforms = ["linux/arm64"]
output = "oci:out/needsnode"

[images.needsnode-arm64]
context = "needsnode"
platforms = ["linux/amd64", "linux/arm64"]
output = "oci:out/needsnode-arm64"
`)
	writeFiles(t, dir, map[string]string{"needsnode/Dockerfile": "FROM scratch AS build\nRUN make\nFROM scratch\nCOPY --from=build /out /app\n"})
	r := runKilnOpts(t, runOpts{dir: dir}, "build-all", "--plan", "api", "needsnode", "web")
	mustExit(t, r, 0)
	for _, want := range []string{
		"api     linux/amd64    yes       local, native",
		"api     linux/arm64    yes       local, cross",
		"needsnode  linux/arm64",
		`dropped: needs a matching node  stage "build" line 2 has RUN (arm64 code)`,
		"api: index pushed to " + reg.Ref("acme/api:1"),
	} {
		if !strings.Contains(baSquash(r.stdout), baSquash(want)) {
			t.Errorf("plan does not say %q:\n%s", want, r.stdout)
		}
	}
	idxAbsent(t, reg.Ref("acme/api:1"))

	binfmt := t.TempDir()
	writeFiles(t, binfmt, map[string]string{"status": "enabled\n", "qemu-aarch64": "enabled\ninterpreter /usr/bin/qemu-aarch64-static\n"})
	r = runKilnOpts(t, runOpts{dir: dir, env: []string{"KILN_BINFMT_DIR=" + binfmt}}, "build-all", "--plan", "--allow-emulation", "needsnode")
	mustExit(t, r, 0)
	if !strings.Contains(baSquash(r.stdout), baSquash("linux/arm64  optional  local, emulated")) || !strings.Contains(r.stdout, "qemu-aarch64") {
		t.Errorf("plan does not say arm64 is emulated:\n%s", r.stdout)
	}

	r = runKilnOpts(t, runOpts{dir: dir}, "build-all", "--plan", "needsnode-arm64")
	mustExit(t, r, 1)
	if !strings.Contains(r.stdout, `images.needsnode-arm64 linux/arm64: stage "build" needs to run code (Dockerfile:2 RUN make)`) {
		t.Errorf("plan does not name the RUN:\n%s", r)
	}
}

// TestBuildAllBadInput: bad flags, names and runners exit 2 before any work.
func TestBuildAllBadInput(t *testing.T) {
	t.Parallel()
	reg := harness.NewRegistry(t)
	dir := baProject(t, reg, reg.Addr, "")
	tests := []struct {
		name    string
		args    []string
		toml    string
		wantMsg string
	}{
		{name: "kubernetes runner without kiln's image", args: []string{"--runner", "kubernetes"}, wantMsg: "runner.kubernetes.image: the Kubernetes runner runs kiln's own image"},
		{name: "kubernetes in build.toml without kiln's image", toml: "\n[runner]\nkind = \"kubernetes\"\n", wantMsg: `runner.kubernetes.image: required with runner.kind = "kubernetes"`},
		{name: "unknown runner", args: []string{"--runner", "ssh"}, wantMsg: "want local or kubernetes"},
		{name: "unknown image", args: []string{"nope"}, wantMsg: "no [images.nope] (images: api, web)"},
		{name: "output for two images", args: []string{"--output", "oci:x", "api", "web"}, wantMsg: "--output names one layout for one image"},
		{name: "output not oci", args: []string{"--output", "x", "api"}, wantMsg: "want oci:DIR"},
		{name: "bad format", args: []string{"--format", "v2s2"}, wantMsg: "want oci or docker"},
		{name: "no jobs", args: []string{"--jobs", "0"}, wantMsg: "--jobs"},
		{name: "flag after a name is read", args: []string{"api", "--jobs", "0"}, wantMsg: "--jobs"},
		{name: "unknown flag", args: []string{"--push"}, wantMsg: "kiln build-all --help"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := dir
			if tt.toml != "" {
				d = t.TempDir()
				baCopyDir(t, dir, d)
				writeFiles(t, d, map[string]string{"build.toml": baReadFile(t, filepath.Join(dir, "build.toml")) + tt.toml})
			}
			r := runKilnOpts(t, runOpts{dir: d}, append([]string{"build-all"}, tt.args...)...)
			mustExit(t, r, 2)
			if !strings.Contains(r.stderr, tt.wantMsg) {
				t.Errorf("stderr does not say %q:\n%s", tt.wantMsg, r)
			}
		})
	}
	idxAbsent(t, reg.Ref("acme/api:1"))
}

// baWantIndex checks the index under tag is digest, valid, and holds
// exactly the platform images of platforms (platform → digest).
func baWantIndex(t *testing.T, tag, digest string, platforms map[string]string) {
	t.Helper()
	idx := idxRemote(t, tag)
	if h, _ := idx.Digest(); h.String() != digest {
		t.Errorf("%s is %s, want %s", tag, h, digest)
	}
	if err := validate.Index(idx); err != nil {
		t.Errorf("%s: validate.Index: %v", tag, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if im.MediaType != types.OCIImageIndex || len(im.Manifests) != len(platforms) {
		t.Errorf("%s: %s with %d children, want an OCI index of %d", tag, im.MediaType, len(im.Manifests), len(platforms))
	}
	for _, d := range im.Manifests {
		if want := platforms[d.Platform.String()]; d.Digest.String() != want {
			t.Errorf("%s: %s is %s, want %s", tag, d.Platform, d.Digest, want)
		}
	}
}

// baWantLayout checks dir is an OCI layout with one index, named refName,
// whose children are the platforms given, in that order, each also filed
// under its own name (refName-os-arch[-variant]) for umoci.
func baWantLayout(t *testing.T, dir, refName string, platforms ...string) {
	t.Helper()
	top, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatalf("%s: %v", dir, err)
	}
	tm, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(tm.Manifests) != 1+len(platforms) || tm.Manifests[0].Annotations[refNameAnnotation] != refName || !tm.Manifests[0].MediaType.IsIndex() {
		t.Fatalf("%s: index.json %+v, want an index named %s and its %d platform images", dir, tm.Manifests, refName, len(platforms))
	}
	idx, err := top.ImageIndex(tm.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(idx); err != nil {
		t.Errorf("%s: validate.Index: %v", dir, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for i, d := range im.Manifests {
		got = append(got, d.Platform.String())
		want := refName + "-" + strings.ReplaceAll(d.Platform.String(), "/", "-")
		if e := tm.Manifests[1+min(i, len(tm.Manifests)-2)]; e.Digest != d.Digest || e.Annotations[refNameAnnotation] != want {
			t.Errorf("%s: index.json entry %d is %s named %q, want %s named %q", dir, 1+i, e.Digest, e.Annotations[refNameAnnotation], d.Digest, want)
		}
	}
	if !slices.Equal(got, platforms) {
		t.Errorf("%s: children %v, want %v", dir, got, platforms)
	}
}

func baHash(t *testing.T, s string) v1.Hash {
	t.Helper()
	h, err := v1.NewHash(s)
	if err != nil {
		t.Fatalf("digest %q: %v", s, err)
	}
	return h
}

// baSquash collapses runs of spaces, so table columns compare loosely.
func baSquash(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func baMapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func baReadFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// baCopyDir copies the folder src to dst.
func baCopyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, info.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
}

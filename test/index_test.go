package test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"kiln/test/harness"
)

// TestIndexCreate stitches single-platform images from two repositories
// and the children of an existing index into one index under two tags, and
// reads it back as go-containerregistry and skopeo would: the children are
// the sources byte for byte, their blobs were mounted rather than uploaded,
// and skopeo picks the right child for arm64 and for arm/v7.
func TestIndexCreate(t *testing.T) {
	t.Parallel()
	reg := harness.NewRegistry(t)
	proxy, reqs := newCountingProxy(t, reg.Addr)
	amd := pushImage(t, reg.Ref("team-a/app:amd64"), harness.ImageSpec{Platform: "linux/amd64", Layers: layers(100, 2, 32<<10)})
	arm := pushImage(t, reg.Ref("team-b/app:arm64"), harness.ImageSpec{Platform: "linux/arm64", Layers: layers(200, 2, 32<<10)})
	armv7Spec := harness.ImageSpec{Platform: "linux/arm/v7", Layers: layers(300, 1, 32<<10)}
	pushIndex(t, reg.Ref("upstream/multi:1"), armv7Spec, harness.ImageSpec{Platform: "linux/s390x", Layers: layers(400, 1, 32<<10)})
	armv7 := idxDigest(t, armv7Spec)

	src := func(s string) string { return proxy.Addr + "/" + s }
	sources := []string{src("team-a/app:amd64"), src("team-b/app@" + arm.String()), src("upstream/multi:1")}
	tags := []string{src("release/app:1"), src("release/app:latest")}
	args := []string{"index", "create", "--tag", tags[0], "--tag", tags[1],
		"--annotation", "org.opencontainers.image.version=1.0",
		"--annotation", "org.opencontainers.image.description=one, two", // a comma stays in the value
		"--descriptor-annotation", "linux/arm64=org.opencontainers.image.description=the arm64 build",
		"--descriptor-annotation", "*=org.opencontainers.image.vendor=kiln tests",
		"--platform", "linux/amd64,linux/arm64,linux/arm/v7", // s390x of the upstream index left out
	}
	reqs.reset()
	r := runKiln(t, append(args, sources...)...)
	mustExit(t, r, 0)
	digest := idxPrintedDigest(t, r)
	for _, want := range []string{"linux/amd64", amd.String(), sources[0], "linux/arm64", arm.String(), sources[1], "linux/arm/v7", armv7.String(), sources[2]} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout does not mention %s:\n%s", want, r.stdout)
		}
	}

	// Children were mounted into release/app, never uploaded or downloaded.
	if n := reqs.count("PATCH", `/blobs/uploads/`) + reqs.count("PUT", `/blobs/uploads/`); n != 0 {
		t.Errorf("%d blob upload requests, want 0: every blob should be mounted\n%s", n, strings.Join(reqs.all(), "\n"))
	}
	if n := reqs.count("POST", `^/v2/release/app/blobs/uploads/$`); n == 0 {
		t.Error("no mount request into release/app")
	}
	for _, l := range idxLayers(t, reg.Ref("team-a/app:amd64")) {
		if n := reqs.count("GET", "/blobs/"+l.String()+"$"); n != 0 {
			t.Errorf("layer %s was downloaded %d times", l, n)
		}
	}

	want := map[string]v1.Hash{"linux/amd64": amd, "linux/arm64": arm, "linux/arm/v7": armv7}
	for _, tag := range tags {
		idx := idxRemote(t, strings.Replace(tag, proxy.Addr, reg.Addr, 1))
		if h, _ := idx.Digest(); h.String() != digest {
			t.Errorf("%s is %s, kiln printed %s", tag, h, digest)
		}
		if err := validate.Index(idx); err != nil {
			t.Errorf("%s: validate.Index: %v", tag, err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		if im.MediaType != types.OCIImageIndex || im.Annotations["org.opencontainers.image.description"] != "one, two" || im.Annotations["org.opencontainers.image.version"] != "1.0" {
			t.Errorf("%s: media type %s, annotations %v", tag, im.MediaType, im.Annotations)
		}
		var order []string
		for _, d := range im.Manifests {
			p := d.Platform.String()
			order = append(order, p)
			if d.Digest != want[p] {
				t.Errorf("%s: %s is %s, want %s", tag, p, d.Digest, want[p])
			}
			if wantAnn := p == "linux/arm64"; wantAnn != (d.Annotations["org.opencontainers.image.description"] == "the arm64 build") || d.Annotations["org.opencontainers.image.vendor"] != "kiln tests" {
				t.Errorf("%s: %s has annotations %v", tag, p, d.Annotations)
			}
		}
		if !slices.Equal(order, []string{"linux/amd64", "linux/arm/v7", "linux/arm64"}) {
			t.Errorf("%s: children in order %v", tag, order)
		}
	}

	raw := idxSkopeoRaw(t, reg.Ref("release/app:1"))
	if h, _, _ := v1.SHA256(strings.NewReader(raw)); h.String() != digest {
		t.Errorf("skopeo inspect --raw gave a manifest of digest %s, want %s", h, digest)
	}
	idxSkopeoPicks(t, reg.Ref("release/app:1"), arm, "--override-arch", "arm64")
	idxSkopeoPicks(t, reg.Ref("release/app:latest"), armv7, "--override-arch", "arm", "--override-variant", "v7")
	idxSkopeoPicks(t, reg.Ref("release/app:1"), amd, "--override-arch", "amd64")

	// The same sources in another order give the same index.
	slices.Reverse(sources)
	r = runKiln(t, append(append(args[:2:2], "--tag", src("release/app:again")), append(args[6:], sources...)...)...)
	mustExit(t, r, 0)
	if again := idxPrintedDigest(t, r); again != digest {
		t.Errorf("sources reversed: index %s, first run %s", again, digest)
	}
}

// TestIndexCreateDockerFormat: --format docker makes a Docker manifest list
// of Docker schema 2 images, refuses OCI images with a hint, and --output
// writes the list into an OCI layout too.
func TestIndexCreateDockerFormat(t *testing.T) {
	t.Parallel()
	reg := harness.NewRegistry(t)
	amd := idxPushRaw(t, reg.Ref("docker/app:amd64"), types.DockerManifestSchema2, v1.Platform{OS: "linux", Architecture: "amd64"})
	arm := idxPushRaw(t, reg.Ref("docker/app-arm:v7"), types.DockerManifestSchema2, v1.Platform{OS: "linux", Architecture: "arm", Variant: "v7"})
	idxPushRaw(t, reg.Ref("oci/app:arm64"), types.OCIManifestSchema1, v1.Platform{OS: "linux", Architecture: "arm64"})

	out := filepath.Join(t.TempDir(), "layout")
	r := runKiln(t, "index", "create", "--format", "docker", "--tag", reg.Ref("docker/multi:1"), "--output", "oci:"+out, reg.Ref("docker/app:amd64"), reg.Ref("docker/app-arm:v7"))
	mustExit(t, r, 0)
	digest := idxPrintedDigest(t, r)
	idx := idxRemote(t, reg.Ref("docker/multi:1"))
	if mt, _ := idx.MediaType(); mt != types.DockerManifestList {
		t.Errorf("media type %s, want a Docker manifest list", mt)
	}
	if err := validate.Index(idx); err != nil {
		t.Errorf("validate.Index: %v", err)
	}
	var list struct {
		MediaType string `json:"mediaType"`
		Manifests []struct {
			MediaType string      `json:"mediaType"`
			Digest    string      `json:"digest"`
			Platform  v1.Platform `json:"platform"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal([]byte(idxSkopeoRaw(t, reg.Ref("docker/multi:1"))), &list); err != nil {
		t.Fatal(err)
	}
	if list.MediaType != string(types.DockerManifestList) || len(list.Manifests) != 2 ||
		list.Manifests[0].Digest != amd.String() || list.Manifests[1].Digest != arm.String() ||
		list.Manifests[1].Platform.Variant != "v7" || list.Manifests[1].MediaType != string(types.DockerManifestSchema2) {
		t.Errorf("skopeo inspect --raw: %+v", list)
	}
	idxSkopeoPicks(t, reg.Ref("docker/multi:1"), arm, "--override-arch", "arm", "--override-variant", "v7")
	if _, ok := entry(t, out, reg.Ref("docker/multi:1")); !ok {
		t.Errorf("--output: no entry named %s in %s", reg.Ref("docker/multi:1"), out)
	}
	entries := entryManifests(t, out, reg.Ref("docker/multi:1"))
	if entries["linux/amd64"].Digest != amd || entries["linux/arm/v7"].Digest != arm {
		t.Errorf("--output: children %v", entries)
	}
	if d, _ := entry(t, out, reg.Ref("docker/multi:1")); d.Digest.String() != digest {
		t.Errorf("--output: index %s, pushed %s", d.Digest, digest)
	}

	r = runKiln(t, "index", "create", "--format", "docker", "--tag", reg.Ref("docker/mixed:1"), reg.Ref("docker/app:amd64"), reg.Ref("oci/app:arm64"))
	mustExit(t, r, 1)
	if !strings.Contains(r.stderr, "oci/app:arm64 is an OCI image manifest") || !strings.Contains(r.stderr, "oci format") {
		t.Errorf("no hint about the OCI child:\n%s", r)
	}
	idxAbsent(t, reg.Ref("docker/mixed:1"))
}

// TestIndexCreateRefuses: inputs that make no good index fail before
// anything is pushed under the tag; bad flags exit 2.
func TestIndexCreateRefuses(t *testing.T) {
	t.Parallel()
	reg := harness.NewRegistry(t)
	pushImage(t, reg.Ref("a/app:amd64"), harness.ImageSpec{Platform: "linux/amd64", Layers: layers(1, 1, 4<<10)})
	pushImage(t, reg.Ref("b/app:amd64"), harness.ImageSpec{Platform: "linux/amd64", Layers: layers(2, 1, 4<<10)})
	pushImage(t, reg.Ref("c/app:arm64"), harness.ImageSpec{Platform: "linux/arm64", Layers: layers(3, 1, 4<<10)})
	// An index that claims arm64 for an amd64 image.
	liar, err := harness.Image(harness.ImageSpec{Platform: "linux/amd64", Layers: layers(4, 1, 4<<10)})
	if err != nil {
		t.Fatal(err)
	}
	idxPush(t, reg.Ref("liar/multi:1"), mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: liar, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}}))

	tag := reg.Ref("out/app:1")
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantMsg  string
	}{
		{name: "duplicate platform", args: []string{"--tag", tag, reg.Ref("a/app:amd64"), reg.Ref("b/app:amd64")}, wantCode: 1, wantMsg: "are both linux/amd64"},
		{name: "platform mismatch", args: []string{"--tag", tag, reg.Ref("liar/multi:1")}, wantCode: 1, wantMsg: "asked to be linux/arm64 but its config says linux/amd64"},
		{name: "missing source", args: []string{"--tag", tag, reg.Ref("a/app:amd64"), reg.Ref("nope/app:1")}, wantCode: 1, wantMsg: "nope/app:1"},
		{name: "platform no source has", args: []string{"--tag", tag, "--platform", "linux/s390x", reg.Ref("a/app:amd64")}, wantCode: 1, wantMsg: "no source has it"},
		{name: "descriptor annotation for a platform not in the index", args: []string{"--tag", tag, "--descriptor-annotation", "linux/arm64=k=v", reg.Ref("a/app:amd64")}, wantCode: 1, wantMsg: "the index has no linux/arm64"},
		{name: "no source", args: []string{"--tag", tag}, wantCode: 2, wantMsg: "no SOURCE"},
		{name: "nowhere to put it", args: []string{reg.Ref("a/app:amd64")}, wantCode: 2, wantMsg: "--tag REF or --output"},
		{name: "tag is a digest", args: []string{"--tag", reg.Ref("out/app@sha256:" + strings.Repeat("0", 64)), reg.Ref("a/app:amd64")}, wantCode: 2, wantMsg: "want a tag"},
		{name: "bad format", args: []string{"--format", "v2s2", "--tag", tag, reg.Ref("a/app:amd64")}, wantCode: 2, wantMsg: "want oci or docker"},
		{name: "bad annotation", args: []string{"--annotation", "novalue", "--tag", tag, reg.Ref("a/app:amd64")}, wantCode: 2, wantMsg: "want KEY=VALUE"},
		{name: "bad descriptor annotation", args: []string{"--descriptor-annotation", "linux/arm64", "--tag", tag, reg.Ref("a/app:amd64")}, wantCode: 2, wantMsg: "PLATFORM=KEY=VALUE"},
		{name: "bad platform", args: []string{"--platform", "linux/armv7", "--tag", tag, reg.Ref("a/app:amd64")}, wantCode: 2, wantMsg: "linux/armv7"},
		{name: "flag after the sources is read", args: []string{"--tag", tag, reg.Ref("a/app:amd64"), "--annotation", "novalue"}, wantCode: 2, wantMsg: "want KEY=VALUE"},
		{name: "unknown flag", args: []string{"--tags", tag, reg.Ref("a/app:amd64")}, wantCode: 2, wantMsg: "kiln index create --help"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runKiln(t, append([]string{"index", "create"}, tt.args...)...)
			mustExit(t, r, tt.wantCode)
			if !strings.Contains(r.stderr, tt.wantMsg) {
				t.Errorf("stderr does not say %q:\n%s", tt.wantMsg, r)
			}
		})
	}
	idxAbsent(t, tag)
}

// idxPrintedDigest is the index digest from kiln's "index sha256:..." line.
func idxPrintedDigest(t *testing.T, r result) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^index (sha256:[0-9a-f]{64}) `).FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("no index digest printed:\n%s", r)
	}
	return m[1]
}

func idxDigest(t *testing.T, spec harness.ImageSpec) v1.Hash {
	t.Helper()
	img, err := harness.Image(spec)
	if err != nil {
		t.Fatal(err)
	}
	h, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func idxRef(t *testing.T, s string) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

func idxRemote(t *testing.T, ref string) v1.ImageIndex {
	t.Helper()
	idx, err := remote.Index(idxRef(t, ref), remote.WithContext(t.Context()))
	if err != nil {
		t.Fatalf("reading %s: %v", ref, err)
	}
	return idx
}

// idxLayers lists the layer digests of the image at ref.
func idxLayers(t *testing.T, ref string) []v1.Hash {
	t.Helper()
	img, err := remote.Image(idxRef(t, ref), remote.WithContext(t.Context()))
	if err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	var out []v1.Hash
	for _, l := range m.Layers {
		out = append(out, l.Digest)
	}
	return out
}

// idxAbsent fails the test if ref exists.
func idxAbsent(t *testing.T, ref string) {
	t.Helper()
	if _, err := remote.Head(idxRef(t, ref), remote.WithContext(t.Context())); err == nil {
		t.Errorf("%s exists, want nothing pushed", ref)
	}
}

func idxPush(t *testing.T, ref string, idx v1.ImageIndex) {
	t.Helper()
	if err := remote.WriteIndex(idxRef(t, ref), idx, remote.WithContext(t.Context())); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
}

// idxPushRaw pushes a small image of manifest type mt for p and returns its
// digest.
func idxPushRaw(t *testing.T, ref string, mt types.MediaType, p v1.Platform) v1.Hash {
	t.Helper()
	configType, layerType := types.OCIConfigJSON, types.OCILayer
	if mt == types.DockerManifestSchema2 {
		configType, layerType = types.DockerConfigJSON, types.DockerLayer
	}
	img := rawImage(t, mt, configType, layerType, p)
	if err := remote.Write(idxRef(t, ref), img, remote.WithContext(t.Context())); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
	h, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// idxSkopeo runs skopeo hermetically: no user credentials, a policy that
// accepts anything. Without skopeo the test is skipped.
func idxSkopeo(t *testing.T, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("skopeo"); err != nil {
		t.Skip("skopeo not installed")
	}
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.json")
	if err := os.WriteFile(policy, []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), "skopeo", append([]string{"--policy", policy}, args...)...)
	cmd.Env = append(baseEnv(), "REGISTRY_AUTH_FILE="+filepath.Join(dir, "auth.json"))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("skopeo %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// idxSkopeoRaw is `skopeo inspect --raw` of ref.
func idxSkopeoRaw(t *testing.T, ref string) string {
	t.Helper()
	return idxSkopeo(t, "inspect", "--raw", "--tls-verify=false", "docker://"+ref)
}

// idxSkopeoPicks copies ref with skopeo's platform overrides into a dir:
// folder (which keeps the manifest as it was, unlike oci:, which would
// convert a Docker one) and checks it chose the image want.
func idxSkopeoPicks(t *testing.T, ref string, want v1.Hash, overrides ...string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "copy")
	args := append(slices.Clone(overrides), "copy", "--src-tls-verify=false", "docker://"+ref, "dir:"+dir)
	idxSkopeo(t, args...)
	raw, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if got, _, _ := v1.SHA256(bytes.NewReader(raw)); got != want {
		t.Errorf("skopeo %s copied %s, want %s", strings.Join(overrides, " "), got, want)
	}
}

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
	"github.com/google/go-containerregistry/pkg/v1/types"

	"kiln/test/harness"
)

// needToolUnlessCI skips the test when prog is missing, except in CI ($CI
// set), where .ci/deps.sh installs it and a skip would hide a broken setup.
func needToolUnlessCI(t *testing.T, prog string) {
	t.Helper()
	if _, err := exec.LookPath(prog); err == nil {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not installed, and CI must run this test (.ci/deps.sh installs it)", prog)
	}
	t.Skipf("%s is not installed (.ci/deps.sh installs it): skipping", prog)
}

// helloProject is the README demo's shape without the Go toolchain: a
// COPY-only image for amd64 and arm64 whose /hello names its architecture.
func helloProject(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	writeContext(t, dir, map[string]string{
		"build.toml": `[images.hello]
context = "examples/hello"
platforms = ["linux/amd64", "linux/arm64"]
output = "oci:out/hello"
`,
		"examples/hello/Dockerfile":      "FROM scratch\nARG TARGETARCH\nCOPY bin/hello-${TARGETARCH} /hello\nUSER 65534:65534\nENTRYPOINT [\"/hello\"]\n",
		"examples/hello/bin/hello-amd64": "amd64\n",
		"examples/hello/bin/hello-arm64": "arm64\n",
	})
	return dir
}

// TestLayoutToolsBuildAll: the layout `kiln build-all --no-push` writes for
// the two-platform demo is read by umoci and skopeo exactly as README says:
// umoci unpacks each platform by its name (DIR:hello-linux-amd64), skopeo
// inspects each and copies the whole index by the index's name.
func TestLayoutToolsBuildAll(t *testing.T) {
	t.Parallel()
	needToolUnlessCI(t, "umoci")
	needToolUnlessCI(t, "skopeo")
	dir := helloProject(t)
	r := runKilnOpts(t, runOpts{dir: dir}, "build-all", "--config", "build.toml", "--reproducible", "--no-push",
		"--cache-dir", t.TempDir(), "hello")
	mustExit(t, r, 0)
	if !strings.Contains(r.stdout, "per platform: hello-linux-amd64, hello-linux-arm64") {
		t.Errorf("the summary should name the per-platform refs:\n%s", r)
	}
	out := filepath.Join(dir, "out", "hello")
	checkLayoutTools(t, out, "hello", map[string]string{"hello-linux-amd64": "amd64", "hello-linux-arm64": "arm64"}, "hello")

	// Built again for amd64 only, the layout names no stale platform.
	toml := filepath.Join(dir, "build.toml")
	if err := os.WriteFile(toml, []byte(strings.Replace(string(mustRead(t, toml)), `, "linux/arm64"`, "", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	r = runKilnOpts(t, runOpts{dir: dir}, "build-all", "--config", "build.toml", "--reproducible", "--no-push",
		"--cache-dir", t.TempDir(), "hello")
	mustExit(t, r, 0)
	if got, want := entryKeys(t, out), []string{"hello", "hello-linux-amd64"}; !slices.Equal(got, want) {
		t.Errorf("after a build of amd64 only, index.json names %q, want %q", got, want)
	}
}

// TestLayoutToolsBuild: `kiln build --output oci:DIR` files the image under
// its name and its platform's; a second platform built into the same
// folder adds its own name, so umoci finds both.
func TestLayoutToolsBuild(t *testing.T) {
	t.Parallel()
	needToolUnlessCI(t, "umoci")
	needToolUnlessCI(t, "skopeo")
	dir := helloProject(t)
	out := filepath.Join(t.TempDir(), "oci")
	for _, p := range []string{"linux/amd64", "linux/arm64"} {
		r := runKilnOpts(t, runOpts{dir: dir}, "build", "--context", filepath.Join(dir, "examples", "hello"),
			"--platform", p, "--reproducible", "--output", "oci:"+out)
		mustExit(t, r, 0)
	}
	checkLayoutTools(t, out, "", map[string]string{"image-linux-amd64": "amd64", "image-linux-arm64": "arm64"}, "hello")
	d, ok := entry(t, out, "image")
	if !ok || d.Platform == nil || d.Platform.Architecture != "arm64" {
		t.Errorf("the name image should be the last build's (arm64): %+v", d)
	}
	// The platform names do not count as entries for kiln push's default.
	reg := harness.NewRegistry(t)
	r := runKiln(t, "push", "--from", "oci:"+out, reg.Ref("tools/pushed:1"))
	mustExit(t, r, 0)
	if !strings.Contains(r.stdout, d.Digest.String()) {
		t.Errorf("kiln push --from without --ref should push the entry named image (%s):\n%s", d.Digest, r)
	}
}

// TestLayoutToolsIndexCreate: `kiln index create --output oci:DIR` names
// each child by its tag and platform, variant included, and umoci unpacks
// it by that name (a name holding the registry's host:port and a tag).
func TestLayoutToolsIndexCreate(t *testing.T) {
	t.Parallel()
	needToolUnlessCI(t, "umoci")
	needToolUnlessCI(t, "skopeo")
	reg := harness.NewRegistry(t)
	pushHandImage(t, reg.Ref("tools/app:amd64"), handImage(t, "linux/amd64", v1.Config{}, handLayer(t, lfile("hello", "amd64\n"))))
	pushHandImage(t, reg.Ref("tools/app:armv7"), handImage(t, "linux/arm/v7", v1.Config{}, handLayer(t, lfile("hello", "arm\n"))))
	out := filepath.Join(t.TempDir(), "oci")
	tag := reg.Ref("tools/multi:1")
	r := runKiln(t, "index", "create", "--tag", tag, "--output", "oci:"+out, reg.Ref("tools/app:amd64"), reg.Ref("tools/app:armv7"))
	mustExit(t, r, 0)
	if !strings.Contains(r.stdout, "per platform: "+tag+"-linux-amd64, "+tag+"-linux-arm-v7") {
		t.Errorf("the output should name the per-platform refs:\n%s", r)
	}
	checkLayoutTools(t, out, tag, map[string]string{tag + "-linux-amd64": "amd64", tag + "-linux-arm-v7": "arm"}, "hello")
}

// checkLayoutTools runs the README's commands on the layout in dir: for
// each platform name, umoci unpack (whose rootfs must hold file with the
// platform's architecture) and skopeo inspect; for the index name (if
// any), skopeo inspect --raw and skopeo copy --all into another layout.
func checkLayoutTools(t *testing.T, dir, indexRef string, platforms map[string]string, file string) {
	t.Helper()
	work := t.TempDir()
	for ref, arch := range platforms {
		bundle := filepath.Join(work, "bundle-"+arch)
		runTool(t, work, "umoci", "unpack", "--rootless", "--image", dir+":"+ref, bundle)
		if b, err := os.ReadFile(filepath.Join(bundle, "rootfs", file)); err != nil || strings.TrimSpace(string(b)) != arch {
			t.Errorf("umoci unpack of %s: /%s = %q (%v), want %q", ref, file, b, err, arch)
		}
		var info struct{ Architecture string }
		if err := json.Unmarshal([]byte(runTool(t, work, "skopeo", "inspect", "oci:"+dir+":"+ref)), &info); err != nil {
			t.Fatal(err)
		}
		if info.Architecture != arch {
			t.Errorf("skopeo inspect oci:%s:%s: architecture %q, want %q", dir, ref, info.Architecture, arch)
		}
	}
	if indexRef == "" {
		return
	}
	var raw struct {
		MediaType string          `json:"mediaType"`
		Manifests []v1.Descriptor `json:"manifests"`
	}
	if err := json.Unmarshal([]byte(runTool(t, work, "skopeo", "inspect", "--raw", "oci:"+dir+":"+indexRef)), &raw); err != nil {
		t.Fatal(err)
	}
	if !types.MediaType(raw.MediaType).IsIndex() || len(raw.Manifests) != len(platforms) {
		t.Errorf("skopeo inspect --raw oci:%s:%s: %s with %d children, want an index of %d", dir, indexRef, raw.MediaType, len(raw.Manifests), len(platforms))
	}
	other := filepath.Join(work, "copy")
	runTool(t, work, "skopeo", "copy", "--all", "oci:"+dir+":"+indexRef, "oci:"+other+":x")
	if got := entryManifests(t, other, "x"); len(got) != len(platforms) {
		t.Errorf("skopeo copy --all of the index: %d platforms, want %d", len(got), len(platforms))
	}
}

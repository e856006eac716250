package test

import (
	"path/filepath"
	"slices"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"kiln/test/harness"
)

// TestBuildCrossPlatform builds a COPY-only Dockerfile for linux/arm64 on
// this amd64 machine, no emulation involved, from a base pushed as a
// two-platform index: the image must be arm64 through and through (config,
// the layout's descriptor, the base layers taken from the index's arm64
// image, TARGETARCH), with the copied files on top.
func TestBuildCrossPlatform(t *testing.T) {
	t.Parallel()
	reg := harness.NewRegistry(t)
	bases := pushBaseImages(t, reg.Addr)
	ctxDir := t.TempDir()
	writeContext(t, ctxDir, map[string]string{
		"Dockerfile": "FROM " + reg.Addr + "/library/base:1\nARG TARGETARCH\nARG TARGETPLATFORM\n" +
			"ENV ARCH=$TARGETARCH PLAT=$TARGETPLATFORM\nCOPY app.txt /opt/app/\nWORKDIR /opt/app\n",
		"app.txt": "portable\n",
	})
	out := filepath.Join(t.TempDir(), "oci")
	mustExit(t, runKiln(t, "build", "--context", ctxDir, "--platform", "linux/arm64", "--output", "oci:"+out), 0)

	img := layoutImage(t, out, "image")
	cf := configOf(t, img)
	if cf.OS != "linux" || cf.Architecture != "arm64" {
		t.Errorf("config platform %s/%s, want linux/arm64", cf.OS, cf.Architecture)
	}
	for _, kv := range []string{"ARCH=arm64", "PLAT=linux/arm64"} {
		if !slices.Contains(cf.Config.Env, kv) {
			t.Errorf("config Env %q lacks %s", cf.Config.Env, kv)
		}
	}
	if d := layoutDescriptor(t, out, "image"); d.Platform != nil && d.Platform.Architecture != "arm64" {
		t.Errorf("index.json says the image is %s", d.Platform)
	}

	got := layerDigests(t, img)
	armBase, amdBase := layerDigests(t, bases["arm64"]), layerDigests(t, bases["amd64"])
	if len(got) <= len(armBase) || !slices.Equal(got[:len(armBase)], armBase) {
		t.Errorf("layers %v do not start with the arm64 base's %v (amd64 base: %v)", got, armBase, amdBase)
	}
	for _, l := range amdBase {
		if slices.Contains(got, l) {
			t.Errorf("the arm64 image holds the amd64 base's layer %s", l)
		}
	}
	tree, dups := flatten(t, img)
	files := byPath(tree)
	if e := files["/etc/arch"]; e.SHA256 != sha256Hex("arm64\n")[:16] {
		t.Errorf("/etc/arch is %v, want the arm64 base's", e)
	}
	if e := files["/opt/app/app.txt"]; e.SHA256 != sha256Hex("portable\n")[:16] {
		t.Errorf("/opt/app/app.txt is %v, want the copied file", e)
	}
	if len(dups) > 0 {
		t.Errorf("duplicate layer entries: %v", dups)
	}
}

// layerDigests lists an image's layer digests, in order.
func layerDigests(t *testing.T, img v1.Image) []v1.Hash {
	t.Helper()
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

// layoutDescriptor is index.json's entry for refName.
func layoutDescriptor(t *testing.T, dir, refName string) v1.Descriptor {
	t.Helper()
	for _, d := range readIndex(t, dir).Manifests {
		if d.Annotations[refNameAnnotation] == refName {
			return d
		}
	}
	t.Fatalf("%s/index.json has no entry %q", dir, refName)
	return v1.Descriptor{}
}

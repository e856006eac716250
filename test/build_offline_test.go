package test

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"kiln/test/harness"
)

// TestBuildFromWarmCache warms a base image, stops the registry, and builds
// on it: with --offline the cache alone serves the base; without it the
// cache is still read first, so no registry is needed either. A base the
// cache lacks fails an offline build with a message that names it and says
// why, rather than a connection error.
func TestBuildFromWarmCache(t *testing.T) {
	t.Parallel()
	reg := harness.NewRegistry(t)
	bases := pushBaseImages(t, reg.Addr)
	base := reg.Ref("library/base:1")
	uncached := reg.Ref("library/never-warmed:1")
	pushHandImage(t, uncached, bases["amd64"])
	cache := filepath.Join(t.TempDir(), "cache")
	mustExit(t, runKiln(t, "warm", "--cache-dir", cache, "--image", base, "--platform", "linux/amd64"), 0)
	if err := reg.Close(); err != nil {
		t.Fatalf("stopping the registry: %v", err)
	}

	ctxDir := t.TempDir()
	writeContext(t, ctxDir, map[string]string{
		"Dockerfile": "FROM " + base + "\nCOPY a.txt /a.txt\n",
		"Uncached":   "FROM " + uncached + "\nCOPY a.txt /a.txt\n",
		"a.txt":      "offline\n",
	})
	for _, flags := range [][]string{{"--offline"}, {}} {
		out := filepath.Join(t.TempDir(), "oci")
		args := append([]string{"build", "--cache-dir", cache, "--context", ctxDir, "--platform", "linux/amd64", "--output", "oci:" + out}, flags...)
		mustExit(t, runKiln(t, args...), 0)
		img := layoutImage(t, out, "image")
		if got, want := layerDigests(t, img), layerDigests(t, bases["amd64"]); len(got) != len(want)+1 || !slices.Equal(got[:len(want)], want) {
			t.Errorf("build %v: layers %v, want the base's %v and one more", flags, got, want)
		}
	}
	verifyCache(t, cache)

	r := runKiln(t, "build", "--cache-dir", cache, "--offline", "--context", ctxDir, "--dockerfile", "Uncached",
		"--platform", "linux/amd64", "--output", "oci:"+filepath.Join(t.TempDir(), "oci"))
	if r.code == 0 {
		t.Fatalf("an offline build on a base the cache lacks succeeded:\n%s", r)
	}
	t.Logf("offline miss:\n%s", r)
	msg := strings.ToLower(r.stderr)
	if !strings.Contains(r.stderr, uncached) || !strings.Contains(msg, "offline") || !strings.Contains(msg, "cache") {
		t.Errorf("the error should name %s and say it is not in the cache of an offline build:\n%s", uncached, r)
	}
	if strings.Contains(msg, "connection refused") {
		t.Errorf("an offline build tried the registry:\n%s", r)
	}
}

package test

import (
	"net/http"
	"path/filepath"
	"testing"

	"kiln/test/harness"
)

// TestWarmMirrors: with [registries."ORIGIN"] mirrors = ["MIRROR"], an image
// the mirror has comes from the mirror alone (the origin serves no manifest
// or blob), an image only the origin has falls back to the origin, and both
// are filed under the reference as written.
func TestWarmMirrors(t *testing.T) {
	t.Parallel()
	origin, mirror := harness.NewRegistry(t), harness.NewRegistry(t)
	both := []harness.ImageSpec{
		{Platform: "linux/amd64", Layers: layers(9001, 2, 128<<10)},
		{Platform: "linux/arm64", Layers: layers(9011, 2, 128<<10)},
	}
	d1 := pushIndex(t, origin.Ref("mirrored/app:1"), both...)
	d2 := pushIndex(t, mirror.Ref("mirrored/app:1"), both...)
	if d1 != d2 {
		t.Fatalf("the same image pushed twice has digests %s and %s", d1, d2)
	}
	pushIndex(t, origin.Ref("origin/only:1"),
		harness.ImageSpec{Platform: "linux/amd64", Layers: layers(9021, 2, 128<<10)},
		harness.ImageSpec{Platform: "linux/arm64", Layers: layers(9031, 2, 128<<10)})
	originProxy, originLog := newCountingProxy(t, origin.Addr)
	mirrorProxy, mirrorLog := newCountingProxy(t, mirror.Addr)
	plats := []string{"linux/amd64", "linux/arm64"}

	warm := func(t *testing.T, ref string) (result, report, string) {
		t.Helper()
		dir := t.TempDir()
		writeFiles(t, dir, map[string]string{"build.toml": `
[registries."` + originProxy.Addr + `"]
mirrors = ["` + mirrorProxy.Addr + `"]

[warm]
platforms = ["linux/amd64", "linux/arm64"]
extra = ["` + ref + `"]
`})
		cache := filepath.Join(t.TempDir(), "cache")
		rep := filepath.Join(t.TempDir(), "report.json")
		r := runKiln(t, "warm", "--config", filepath.Join(dir, "build.toml"), "--cache-dir", cache, "--report", rep)
		mustExit(t, r, 0)
		return r, readReport(t, rep), cache
	}

	t.Run("on the mirror", func(t *testing.T) {
		originLog.reset()
		mirrorLog.reset()
		ref := originProxy.Addr + "/mirrored/app:1"
		_, rep, cache := warm(t, ref)
		wantStatuses(t, rep, statuses(pairs([]string{ref}, plats), "pulled"))
		for _, m := range []string{http.MethodGet, http.MethodHead} {
			if n := originLog.count(m, anyManifest) + originLog.count(m, anyBlob); n != 0 {
				t.Errorf("the origin served %d %s requests for manifests or blobs, want 0: %v", n, m, originLog.all())
			}
		}
		if n := mirrorLog.count(http.MethodGet, anyBlob); n < 6 {
			t.Errorf("the mirror served %d blob GETs, want every blob (6): %v", n, mirrorLog.all())
		}
		if keys := entryKeys(t, cache); len(keys) != 1 || keys[0] != ref {
			t.Errorf("index.json names %v, want [%s]", keys, ref)
		}
		verifyCache(t, cache)
		validateCache(t, cache)
	})

	t.Run("only on the origin", func(t *testing.T) {
		originLog.reset()
		mirrorLog.reset()
		ref := originProxy.Addr + "/origin/only:1"
		_, rep, cache := warm(t, ref)
		wantStatuses(t, rep, statuses(pairs([]string{ref}, plats), "pulled"))
		if n := mirrorLog.count(http.MethodGet, `^/v2/origin/only/manifests/1$`) + mirrorLog.count(http.MethodHead, `^/v2/origin/only/manifests/1$`); n != 1 {
			t.Errorf("the mirror was asked %d times for the manifest, want once (a 404 is not retried): %v", n, mirrorLog.all())
		}
		if n := originLog.count(http.MethodGet, anyBlob); n < 6 {
			t.Errorf("the origin served %d blob GETs, want every blob (6): %v", n, originLog.all())
		}
		if keys := entryKeys(t, cache); len(keys) != 1 || keys[0] != ref {
			t.Errorf("index.json names %v, want [%s]", keys, ref)
		}
		verifyCache(t, cache)
		validateCache(t, cache)
	})
}

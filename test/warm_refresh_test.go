package test

import (
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"kiln/test/harness"
)

// TestWarmRefresh: with --refresh, entries younger than --max-age cost no
// request at all; older ones cost one HEAD each and only have their checked
// time renewed if the tag has not moved; a tag that moved is pulled again
// ("updated").
func TestWarmRefresh(t *testing.T) {
	t.Parallel()
	reg := harness.NewRegistry(t)
	pushIndex(t, reg.Ref("refresh/multi:1"),
		harness.ImageSpec{Platform: "linux/amd64", Layers: layers(6001, 2, 64<<10)},
		harness.ImageSpec{Platform: "linux/arm64", Layers: layers(6011, 2, 64<<10)})
	pushImage(t, reg.Ref("refresh/single:1"), harness.ImageSpec{Platform: "linux/amd64", Layers: layers(6021, 2, 64<<10)})
	oldDigest := pushImage(t, reg.Ref("refresh/moving:1"), harness.ImageSpec{Platform: "linux/amd64", Layers: layers(6031, 2, 64<<10)})
	proxy, log := newCountingProxy(t, reg.Addr)
	multi, single, moving := proxy.Addr+"/refresh/multi:1", proxy.Addr+"/refresh/single:1", proxy.Addr+"/refresh/moving:1"
	refs := []string{multi, single, moving}
	cache := filepath.Join(t.TempDir(), "cache")
	warm := func(maxAge string) report {
		t.Helper()
		rep := filepath.Join(t.TempDir(), "report.json")
		mustExit(t, runKiln(t, "warm", "--cache-dir", cache, "--platform", "linux/amd64", "--refresh", "--max-age", maxAge,
			"--report", rep, "--image", multi, "--image", single, "--image", moving), 0)
		return readReport(t, rep)
	}
	checked := func() map[string]string {
		out := map[string]string{}
		for _, d := range readIndex(t, cache).Manifests {
			out[d.Annotations[refNameAnnotation]] = d.Annotations["io.kiln.cache.checked"]
		}
		return out
	}

	first := warm("1h")
	wantStatuses(t, first, statuses(pairs(refs, []string{"linux/amd64"}), "pulled"))
	firstChecked := checked()

	// Younger than max-age: not one request.
	log.reset()
	rep := warm("1h")
	wantStatuses(t, rep, statuses(pairs(refs, []string{"linux/amd64"}), "fresh"))
	if reqs := log.all(); len(reqs) != 0 {
		t.Errorf("entries younger than --max-age cost %d requests, want none: %v", len(reqs), reqs)
	}
	for _, r := range rep.Results {
		if r.Revalidated || r.Bytes != 0 {
			t.Errorf("%s: revalidated=%v bytes=%d, want neither", r.Ref, r.Revalidated, r.Bytes)
		}
	}

	// Older than max-age, unchanged: one HEAD each, no body, a new checked time.
	time.Sleep(10 * time.Millisecond) // so that the renewed time differs
	log.reset()
	rep = warm("0s")
	wantStatuses(t, rep, statuses(pairs(refs, []string{"linux/amd64"}), "fresh"))
	for _, r := range rep.Results {
		if !r.Revalidated || r.Bytes != 0 {
			t.Errorf("%s: revalidated=%v bytes=%d, want revalidated with 0 bytes", r.Ref, r.Revalidated, r.Bytes)
		}
	}
	for _, repo := range []string{"multi", "single", "moving"} {
		if n := log.count(http.MethodHead, `^/v2/refresh/`+repo+`/manifests/1$`); n != 1 {
			t.Errorf("refresh/%s: %d HEADs of its tag, want 1", repo, n)
		}
	}
	if n := log.count(http.MethodGet, anyManifest) + log.count(http.MethodGet, anyBlob) + log.count(http.MethodHead, anyBlob); n != 0 {
		t.Errorf("revalidating unchanged tags fetched %d manifests or blobs, want none: %v", n, log.all())
	}
	renewed := checked()
	for _, ref := range refs {
		if renewed[ref] == "" || renewed[ref] == firstChecked[ref] {
			t.Errorf("%s: checked time %q not renewed (was %q)", ref, renewed[ref], firstChecked[ref])
		}
	}
	verifyCache(t, cache)

	// The tag moves: pulled again, the others only checked.
	newDigest := pushImage(t, reg.Ref("refresh/moving:1"), harness.ImageSpec{Platform: "linux/amd64", Layers: layers(6041, 2, 64<<10)})
	if newDigest == oldDigest {
		t.Fatal("the new push has the old digest")
	}
	oldManifest := first.byPair()[moving+" linux/amd64"].Digest
	log.reset()
	rep = warm("0s")
	wantStatuses(t, rep, map[string]string{
		multi + " linux/amd64":  "fresh",
		single + " linux/amd64": "fresh",
		moving + " linux/amd64": "updated",
	})
	got := rep.byPair()[moving+" linux/amd64"]
	if got.Digest == oldManifest || got.Digest != newDigest.String() {
		t.Errorf("moved tag: digest %s, want the new %s (old %s)", got.Digest, newDigest, oldManifest)
	}
	if got.Bytes == 0 {
		t.Errorf("moved tag: 0 bytes downloaded")
	}
	e, ok := entry(t, cache, moving)
	if !ok || e.Annotations["io.kiln.cache.source-digest"] != newDigest.String() {
		t.Errorf("index.json entry for %s: %v, want source digest %s", moving, e.Annotations, newDigest)
	}
	if ms := entryManifests(t, cache, moving); ms["linux/amd64"].Digest != newDigest {
		t.Errorf("%s: cached linux/amd64 is %s, want %s", moving, ms["linux/amd64"].Digest, newDigest)
	}
	verifyCache(t, cache)
	validateCache(t, cache)

	// cache.max_age in build.toml is the default of --max-age.
	cfgDir := t.TempDir()
	withMaxAge := func(maxAge string) string {
		writeFiles(t, cfgDir, map[string]string{"build.toml": "[cache]\nmax_age = \"" + maxAge + "\"\n[warm]\nplatforms = [\"linux/amd64\"]\nextra = [\"" + multi + "\"]\n"})
		return filepath.Join(cfgDir, "build.toml")
	}
	log.reset()
	mustExit(t, runKiln(t, "warm", "--config", withMaxAge("1h"), "--cache-dir", cache, "--refresh"), 0)
	if reqs := log.all(); len(reqs) != 0 {
		t.Errorf("cache.max_age = 1h: %d requests, want none: %v", len(reqs), reqs)
	}
	time.Sleep(5 * time.Millisecond)
	log.reset()
	mustExit(t, runKiln(t, "warm", "--config", withMaxAge("1ms"), "--cache-dir", cache, "--refresh"), 0)
	if n := log.count(http.MethodHead, `^/v2/refresh/multi/manifests/1$`); n != 1 {
		t.Errorf("cache.max_age = 1ms: %d HEADs, want 1: %v", n, log.all())
	}

	// And without --refresh the new image is what warm finds.
	rep2 := filepath.Join(t.TempDir(), "report.json")
	mustExit(t, runKiln(t, "warm", "--cache-dir", cache, "--platform", "linux/amd64", "--image", moving, "--report", rep2), 0)
	if got := readReport(t, rep2).byPair()[moving+" linux/amd64"]; got.Status != "fresh" || got.Digest != newDigest.String() {
		t.Errorf("after the update: %s %s, want fresh %s", got.Status, got.Digest, newDigest)
	}
	verifyCache(t, cache)
}

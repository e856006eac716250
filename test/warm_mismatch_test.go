package test

import (
	"path/filepath"
	"strings"
	"testing"

	"kiln/test/harness"
)

// TestWarmPlatformMismatch asks for platforms an image does not have: a
// single-platform amd64 image for arm64, an index without amd64. That pair
// fails (exit 1) with a message naming both platforms and is not cached;
// the pairs that exist are.
func TestWarmPlatformMismatch(t *testing.T) {
	t.Parallel()
	reg := harness.NewRegistry(t)
	single := reg.Ref("mismatch/single:1")
	pushImage(t, single, harness.ImageSpec{Platform: "linux/amd64", Layers: layers(2001, 2, 32<<10)})
	armOnly := reg.Ref("mismatch/arm:1")
	pushIndex(t, armOnly,
		harness.ImageSpec{Platform: "linux/arm64", Layers: layers(2011, 1, 32<<10)},
		harness.ImageSpec{Platform: "linux/arm/v7", Layers: layers(2021, 1, 32<<10)})

	cache := filepath.Join(t.TempDir(), "cache")
	rep := filepath.Join(t.TempDir(), "report.json")
	r := runKiln(t, "warm", "--cache-dir", cache, "--report", rep,
		"--image", single, "--image", armOnly, "--platform", "linux/amd64", "--platform", "linux/arm64")
	mustExit(t, r, 1)
	got := readReport(t, rep)
	wantStatuses(t, got, map[string]string{
		single + " linux/amd64":  "pulled",
		single + " linux/arm64":  "failed",
		armOnly + " linux/amd64": "failed",
		armOnly + " linux/arm64": "pulled",
	})
	res := got.byPair()
	if msg := res[single+" linux/arm64"].Error; !strings.Contains(msg, "linux/amd64") || !strings.Contains(msg, "linux/arm64") {
		t.Errorf("single-platform mismatch: error %q should name the image's platform and the one asked for", msg)
	}
	if msg := res[armOnly+" linux/amd64"].Error; !strings.Contains(msg, "linux/amd64") {
		t.Errorf("index without the platform: error %q should name linux/amd64", msg)
	}
	if !strings.Contains(r.output(), "linux/arm64") || !strings.Contains(r.stdout, "failed") {
		t.Errorf("the summary should show the failed pair:\n%s", r)
	}

	// The failed pairs are not cached, silently or otherwise.
	if ms := entryManifests(t, cache, single); len(ms) != 1 || ms["linux/amd64"].Digest.String() != res[single+" linux/amd64"].Digest {
		t.Errorf("%s: cached %v, want only linux/amd64 %s", single, ms, res[single+" linux/amd64"].Digest)
	}
	if ms := entryManifests(t, cache, armOnly); len(ms) != 1 || ms["linux/arm64"].Digest.String() != res[armOnly+" linux/arm64"].Digest {
		t.Errorf("%s: cached %v, want only linux/arm64", armOnly, ms)
	}
	verifyCache(t, cache)
	validateCache(t, cache)

	// Asking again for what exists succeeds from the cache alone.
	rep2 := filepath.Join(t.TempDir(), "report.json")
	r = runKiln(t, "warm", "--cache-dir", cache, "--report", rep2, "--image", single, "--platform", "linux/amd64")
	mustExit(t, r, 0)
	wantStatuses(t, readReport(t, rep2), map[string]string{single + " linux/amd64": "fresh"})
}

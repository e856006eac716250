package test

import (
	"net/http"
	"path/filepath"
	"regexp"
	"testing"

	"kiln/test/harness"
)

// TestWarmDownloadsEachBlobOnce counts blob GETs at a proxy: a blob shared
// by several images and platforms is fetched once per run, and a blob
// already in the cache is not fetched again by a later run for another
// image.
func TestWarmDownloadsEachBlobOnce(t *testing.T) {
	t.Parallel()
	reg := harness.NewRegistry(t)
	pushStandard(t, reg.Addr) // base/multi:1 and app/shares:1 share a layer on both platforms
	same := harness.LayerSpec{Seed: 15001, Size: 1 << 20, Files: 2}
	pushIndex(t, reg.Ref("dedupe/same:1"), // one layer in both platforms
		harness.ImageSpec{Platform: "linux/amd64", Layers: []harness.LayerSpec{same, {Seed: 15002, Size: 64 << 10}}},
		harness.ImageSpec{Platform: "linux/arm64", Layers: []harness.LayerSpec{same, {Seed: 15003, Size: 64 << 10}}})
	pushIndex(t, reg.Ref("dedupe/later:1"), // shares `same` with the first run
		harness.ImageSpec{Platform: "linux/amd64", Layers: []harness.LayerSpec{same, {Seed: 15004, Size: 64 << 10}}})
	proxy, log := newCountingProxy(t, reg.Addr)
	cache := filepath.Join(t.TempDir(), "cache")
	blobGETs := func() map[string]int {
		out := map[string]int{}
		re := regexp.MustCompile(`^GET /v2/.+/blobs/(sha256:[0-9a-f]{64})$`)
		for _, r := range log.all() {
			if m := re.FindStringSubmatch(r); m != nil {
				out[m[1]]++
			}
		}
		return out
	}

	mustExit(t, runKiln(t, "warm", "--cache-dir", cache, "--platform", "linux/amd64,linux/arm64",
		"--image", proxy.Addr+"/base/multi:1", "--image", proxy.Addr+"/app/shares:1", "--image", proxy.Addr+"/dedupe/same:1"), 0)
	gets := blobGETs()
	for d, n := range gets {
		if n != 1 {
			t.Errorf("blob %s fetched %d times in one run, want once", d, n)
		}
	}
	distinctBlobs := 0
	for _, d := range readIndex(t, cache).Manifests {
		for _, m := range entryManifests(t, cache, d.Annotations[refNameAnnotation]) {
			for _, h := range imageBlobs(t, cache, m.Digest)[1:] {
				if gets[h.String()] == 0 {
					t.Errorf("blob %s is in the cache but was never fetched", h)
				}
				gets[h.String()] = -1 // count each once
			}
		}
	}
	for _, n := range gets {
		if n == -1 {
			distinctBlobs++
		}
	}
	t.Logf("first run: %d distinct config and layer blobs, %d requests in all", distinctBlobs, len(log.all()))
	verifyCache(t, cache)

	log.reset()
	sameDigest := entryManifests(t, cache, proxy.Addr+"/dedupe/same:1")["linux/amd64"].Digest
	sharedLayer := imageBlobs(t, cache, sameDigest)[2]
	mustExit(t, runKiln(t, "warm", "--cache-dir", cache, "--platform", "linux/amd64", "--image", proxy.Addr+"/dedupe/later:1"), 0)
	if n := blobGETs()[sharedLayer.String()]; n != 0 {
		t.Errorf("the layer already cached was fetched %d times by the next run", n)
	}
	if n := log.count(http.MethodGet, anyBlob); n != 2 { // its config and its own layer
		t.Errorf("the second run fetched %d blobs, want 2: %v", n, log.all())
	}
	verifyCache(t, cache)
}

// TestWarmReportsBytes: the report's bytes are what was downloaded: the
// distinct config and layer bytes of a cold warm, whatever the kind of
// image (an index, a single-platform image), and nothing on a warm one.
func TestWarmReportsBytes(t *testing.T) {
	t.Parallel()
	reg := harness.NewRegistry(t)
	pushStandard(t, reg.Addr)
	single := reg.Ref("bytes/single:1")
	pushImage(t, single, harness.ImageSpec{Platform: "linux/amd64", Layers: layers(16001, 2, 64<<10)})
	refs := []string{reg.Ref("base/multi:1"), reg.Ref("app/shares:1"), single}
	cache := filepath.Join(t.TempDir(), "cache")
	rep := filepath.Join(t.TempDir(), "report.json")
	args := []string{"warm", "--cache-dir", cache, "--platform", "linux/amd64", "--report", rep}
	for _, r := range refs {
		args = append(args, "--image", r)
	}
	mustExit(t, runKiln(t, args...), 0)
	got := readReport(t, rep)
	if distinct := validateCache(t, cache); got.Bytes != distinct {
		t.Errorf("report says %d bytes downloaded; the cache holds %d distinct config and layer bytes", got.Bytes, distinct)
	}
	if res := got.byPair()[single+" linux/amd64"]; res.Bytes != res.Size {
		t.Errorf("%s, a single-platform image sharing nothing: %d bytes downloaded of its %d", single, res.Bytes, res.Size)
	}
	verifyCache(t, cache)
	mustExit(t, runKiln(t, args...), 0)
	if again := readReport(t, rep); again.Bytes != 0 {
		t.Errorf("warm cache: %d bytes downloaded, want 0", again.Bytes)
	}
}

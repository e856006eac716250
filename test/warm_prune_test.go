package test

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"kiln/test/harness"
)

// pruneFixtures pushes A (an index), B (a single image sharing its first
// layer with A) and C, all linux/amd64, and returns their references.
func pruneFixtures(t *testing.T, reg *harness.Registry) (a, b, c string) {
	t.Helper()
	shared := harness.LayerSpec{Seed: 7001, Size: 256 << 10, Files: 2}
	a, b, c = reg.Ref("prune/a:1"), reg.Ref("prune/b:1"), reg.Ref("prune/c:1")
	pushIndex(t, a,
		harness.ImageSpec{Platform: "linux/amd64", Layers: append([]harness.LayerSpec{shared}, layers(7011, 1, 128<<10)...)},
		harness.ImageSpec{Platform: "linux/arm64", Layers: layers(7021, 1, 128<<10)})
	pushImage(t, b, harness.ImageSpec{Platform: "linux/amd64", Layers: append([]harness.LayerSpec{shared}, layers(7031, 2, 128<<10)...)})
	pushIndex(t, c, harness.ImageSpec{Platform: "linux/amd64", Layers: layers(7041, 2, 128<<10)})
	return a, b, c
}

// TestWarmPrune drops the entry of an image no longer asked for and the
// blobs only it used, keeps a layer it shares with a kept image, and leaves
// a cache from which the kept images need no download.
func TestWarmPrune(t *testing.T) {
	t.Parallel()
	reg := harness.NewRegistry(t)
	a, b, c := pruneFixtures(t, reg)
	cache := filepath.Join(t.TempDir(), "cache")
	amd := []string{"--platform", "linux/amd64"}
	mustExit(t, runKiln(t, append([]string{"warm", "--cache-dir", cache, "--image", a, "--image", b, "--image", c}, amd...)...), 0)

	manifestOf := func(ref string) v1.Hash { return entryManifests(t, cache, ref)["linux/amd64"].Digest }
	aBlobs, bBlobs, cBlobs := imageBlobs(t, cache, manifestOf(a)), imageBlobs(t, cache, manifestOf(b)), imageBlobs(t, cache, manifestOf(c))
	bEntry, _ := entry(t, cache, b)
	shared := aBlobs[2] // manifest, config, first layer
	if bBlobs[2] != shared {
		t.Fatalf("fixtures: B's first layer %s is not A's %s", bBlobs[2], shared)
	}

	rep := filepath.Join(t.TempDir(), "report.json")
	r := runKiln(t, append([]string{"warm", "--cache-dir", cache, "--prune", "--report", rep, "--image", a, "--image", c}, amd...)...)
	mustExit(t, r, 0)
	pr := readReport(t, rep).Pruned
	if pr == nil || !slices.Equal(pr.Entries, []string{b}) {
		t.Fatalf("report: pruned %+v, want entries [%s]", pr, b)
	}
	if keys := entryKeys(t, cache); !slices.Equal(keys, []string{a, c}) {
		t.Errorf("index.json names %v after prune, want [%s %s]", keys, a, c)
	}
	for _, h := range append(append(slices.Clone(aBlobs), cBlobs...), shared) {
		if !hasBlob(cache, h) {
			t.Errorf("prune deleted %s, which a kept image uses", h)
		}
	}
	gone := append([]v1.Hash{bEntry.Digest}, bBlobs[0], bBlobs[1]) // B's index, manifest, config
	gone = append(gone, bBlobs[3:]...)                             // and its own layers
	for _, h := range gone {
		if hasBlob(cache, h) {
			t.Errorf("prune kept %s, which only B used", h)
		}
	}
	if pr.Blobs != len(gone) {
		t.Errorf("report: %d blobs pruned, want %d", pr.Blobs, len(gone))
	}
	verifyCache(t, cache)
	validateCache(t, cache)

	rep2 := filepath.Join(t.TempDir(), "report.json")
	mustExit(t, runKiln(t, append([]string{"warm", "--cache-dir", cache, "--report", rep2, "--image", a, "--image", c}, amd...)...), 0)
	again := readReport(t, rep2)
	wantStatuses(t, again, statuses(pairs([]string{a, c}, []string{"linux/amd64"}), "fresh"))
	if again.Bytes != 0 {
		t.Errorf("re-warm after prune downloaded %d bytes, want 0", again.Bytes)
	}

	// Pruning with what is kept named in build.toml works the same.
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"build.toml": "[warm]\nplatforms = [\"linux/amd64\"]\nextra = [\"" + c + "\"]\n"})
	mustExit(t, runKiln(t, "warm", "--config", filepath.Join(dir, "build.toml"), "--cache-dir", cache, "--prune"), 0)
	if keys := entryKeys(t, cache); !slices.Equal(keys, []string{c}) {
		t.Errorf("index.json names %v after pruning to build.toml, want [%s]", keys, c)
	}
	for _, h := range aBlobs {
		if hasBlob(cache, h) {
			t.Errorf("prune to build.toml kept A's blob %s", h)
		}
	}
	verifyCache(t, cache)
}

// TestWarmPruneRefusesNothing: a prune with nothing configured would empty
// the cache; it is refused, and the cache is left exactly as it was.
func TestWarmPruneRefusesNothing(t *testing.T) {
	t.Parallel()
	reg := harness.NewRegistry(t)
	a, b, _ := pruneFixtures(t, reg)
	cache := filepath.Join(t.TempDir(), "cache")
	mustExit(t, runKiln(t, "warm", "--cache-dir", cache, "--platform", "linux/amd64", "--image", a, "--image", b), 0)
	before := snapshot(t, cache)
	index, err := os.ReadFile(filepath.Join(cache, "index.json"))
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name  string
		files map[string]string
		args  []string
		env   []string
	}{
		{name: "no build.toml and no --image", args: []string{"--prune"}},
		{name: "KILN_PRUNE alone", env: []string{"KILN_PRUNE=true"}},
		{name: "--platform only", args: []string{"--prune", "--platform", "linux/amd64"}},
		{
			name: "build.toml whose images need no base image",
			files: map[string]string{
				"build.toml":     "[images.app]\ncontext = \"ctx\"\nplatforms = [\"linux/amd64\"]\ntags = [\"" + reg.Ref("out/app:1") + "\"]\n",
				"ctx/Dockerfile": "FROM scratch\nCOPY app /app\n",
			},
			args: []string{"--prune", "--config", "build.toml"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, tc.files)
			args := append([]string{"warm", "--cache-dir", cache}, tc.args...)
			r := runKilnOpts(t, runOpts{dir: dir, env: tc.env}, args...)
			if r.code == 0 {
				t.Errorf("prune with nothing configured: exit 0, want a refusal:\n%s", r)
			}
			after := snapshot(t, cache)
			if !maps.Equal(before, after) {
				t.Errorf("a refused prune changed the cache:\nbefore %v\nafter  %v", before, after)
			}
			if now, _ := os.ReadFile(filepath.Join(cache, "index.json")); string(now) != string(index) {
				t.Errorf("a refused prune changed index.json")
			}
		})
	}
	verifyCache(t, cache)
}

// TestWarmPruneKeepsDigestReference: an image configured by digest that
// warm found in the cache under its tag must survive a prune that keeps
// only the digest reference; otherwise the next build finds nothing.
func TestWarmPruneKeepsDigestReference(t *testing.T) {
	t.Parallel()
	reg := harness.NewRegistry(t)
	a, b, _ := pruneFixtures(t, reg)
	cache := filepath.Join(t.TempDir(), "cache")
	mustExit(t, runKiln(t, "warm", "--cache-dir", cache, "--platform", "linux/amd64", "--image", a, "--image", b), 0)
	src, ok := entry(t, cache, a)
	if !ok {
		t.Fatalf("no entry for %s", a)
	}
	pinned := reg.Ref("prune/a") + "@" + src.Annotations["io.kiln.cache.source-digest"]

	rep := filepath.Join(t.TempDir(), "report.json")
	mustExit(t, runKiln(t, "warm", "--cache-dir", cache, "--platform", "linux/amd64", "--prune", "--image", pinned, "--report", rep), 0)
	if got := readReport(t, rep); got.Bytes != 0 {
		t.Errorf("warming %s, already cached under its tag, downloaded %d bytes", pinned, got.Bytes)
	}
	verifyCache(t, cache)

	rep2 := filepath.Join(t.TempDir(), "report.json")
	mustExit(t, runKiln(t, "warm", "--cache-dir", cache, "--platform", "linux/amd64", "--image", pinned, "--report", rep2), 0)
	again := readReport(t, rep2)
	wantStatuses(t, again, map[string]string{pinned + " linux/amd64": "fresh"})
	if again.Bytes != 0 {
		t.Errorf("after a prune that kept %s, warming it again downloaded %d bytes: the prune dropped it (entries now %v)", pinned, again.Bytes, entryKeys(t, cache))
	}
	verifyCache(t, cache)
}

// TestWarmPruneWaitsForBuilds: a build holds the cache's "in use" lock
// shared (README: .kiln/use.lock) while it reads blobs; prune must wait for
// it, give up after --lock-timeout without deleting anything, and go ahead
// once the build is done.
func TestWarmPruneWaitsForBuilds(t *testing.T) {
	t.Parallel()
	reg := harness.NewRegistry(t)
	a, b, _ := pruneFixtures(t, reg)
	cache := filepath.Join(t.TempDir(), "cache")
	mustExit(t, runKiln(t, "warm", "--cache-dir", cache, "--platform", "linux/amd64", "--image", a, "--image", b), 0)
	before := snapshot(t, cache)

	build := holdSharedLock(t, filepath.Join(cache, ".kiln", "use.lock"))
	prune := []string{"warm", "--cache-dir", cache, "--platform", "linux/amd64", "--image", a, "--prune"}
	r := runKiln(t, append(prune, "--lock-timeout", "1s")...)
	if r.code == 0 {
		t.Errorf("prune while a build holds the cache: exit 0, want a timeout:\n%s", r)
	}
	if !strings.Contains(strings.ToLower(r.output()), "lock") {
		t.Errorf("the timeout should say it waited for the lock:\n%s", r)
	}
	if after := snapshot(t, cache); !maps.Equal(before, after) {
		t.Errorf("prune changed the cache while a build held it")
	}

	ctx, cancel := context.WithTimeout(t.Context(), defaultTimeout)
	defer cancel()
	cmd, _, stderr := kilnCmd(t, ctx, runOpts{}, prune...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if _, ok := entry(t, cache, b); !ok {
		t.Errorf("prune went ahead while a build held the cache")
	}
	if err := build.Close(); err != nil { // the build ends
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("prune after the build ended: %v\n%s", err, stderr)
	}
	if keys := entryKeys(t, cache); !slices.Equal(keys, []string{a}) {
		t.Errorf("index.json names %v after prune, want [%s]", keys, a)
	}
	verifyCache(t, cache)
}

// holdSharedLock takes flock(LOCK_SH) on path as a build would; closing
// the file releases it.
func holdSharedLock(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		t.Fatalf("locking %s: %v", path, err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

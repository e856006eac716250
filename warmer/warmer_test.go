package warmer

import (
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"

	"kiln/manifest"
	"kiln/platform"
)

// testRegistry is an in-process registry that counts requests by kind.
type testRegistry struct {
	host  string
	mu    sync.Mutex
	count map[string]int // "GET blob", "HEAD manifest", ...
}

func newTestRegistry(t *testing.T) *testRegistry {
	t.Helper()
	tr := &testRegistry{count: map[string]int{}}
	inner := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kind := "other"
		switch {
		case strings.Contains(r.URL.Path, "/blobs/"):
			kind = "blob"
		case strings.Contains(r.URL.Path, "/manifests/"):
			kind = "manifest"
		}
		tr.mu.Lock()
		tr.count[r.Method+" "+kind]++
		tr.mu.Unlock()
		inner.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	tr.host = strings.TrimPrefix(srv.URL, "http://")
	return tr
}

func (tr *testRegistry) n(kind string) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.count[kind]
}

func (tr *testRegistry) reset() {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.count = map[string]int{}
}

func (tr *testRegistry) ref(s string) string { return tr.host + "/" + s }

func platformImage(t *testing.T, p string, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	pp := platform.ToV1(platform.MustParse(p))
	cf.OS, cf.Architecture, cf.Variant = pp.OS, pp.Architecture, pp.Variant
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func layer(t *testing.T) v1.Layer {
	t.Helper()
	l, err := random.Layer(64<<10, types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// pushIndex pushes an index with one image per platform; shared is added
// first to every image.
func pushIndex(t *testing.T, ref string, shared v1.Layer, plats ...string) v1.Hash {
	t.Helper()
	var idx v1.ImageIndex = mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range plats {
		img := platformImage(t, p, shared, layer(t))
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: platform.ToV1(platform.MustParse(p))}})
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(r, idx); err != nil {
		t.Fatal(err)
	}
	d, _ := idx.Digest()
	return d
}

func pushImage(t *testing.T, ref string, img v1.Image) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
}

func items(ref string, plats ...string) []Item {
	var out []Item
	for _, p := range plats {
		out = append(out, Item{Ref: ref, Platform: platform.MustParse(p)})
	}
	return out
}

func newWarmer(t *testing.T, dir string, opts ...Option) *Warmer {
	t.Helper()
	w, err := New(dir, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func statuses(rep *Report) map[string]Status {
	out := map[string]Status{}
	for _, r := range rep.Results {
		out[r.Ref+" "+r.Platform] = r.Status
	}
	return out
}

func TestWarmPullsEveryPlatformAndSharesBlobs(t *testing.T) {
	reg := newTestRegistry(t)
	shared := layer(t)
	a, b := reg.ref("base/a:1"), reg.ref("base/b:1")
	pushIndex(t, a, shared, "linux/amd64", "linux/arm64")
	pushIndex(t, b, shared, "linux/amd64", "linux/arm64")
	reg.reset()

	dir := t.TempDir()
	w := newWarmer(t, dir, WithJobs(4))
	rep, err := w.Warm(context.Background(), append(items(a, "linux/amd64", "arm64"), items(b, "linux/amd64", "linux/arm64/v8")...))
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Counts[StatusPulled] != 4 {
		t.Fatalf("want 4 pulled, got %v", statuses(rep))
	}
	// 2 images × 2 platforms × (config + own layer) + the shared layer once.
	if got, want := reg.n("GET blob"), 2*2*2+1; got != want {
		t.Errorf("blob GETs = %d, want %d (shared layer fetched once)", got, want)
	}
	vr, err := w.Verify(context.Background())
	if err != nil || !vr.OK() {
		t.Fatalf("verify: %v %+v", err, vr)
	}

	// Everything cached: a second warm costs no network at all.
	reg.reset()
	rep, err = w.Warm(context.Background(), append(items(a, "linux/amd64", "linux/arm64"), items(b, "linux/amd64")...))
	if err != nil || rep.Counts[StatusFresh] != 3 {
		t.Fatalf("second warm: %v %v", err, statuses(rep))
	}
	if total := sumCounts(reg); total != 0 {
		t.Errorf("second warm made %d requests, want 0", total)
	}
}

func sumCounts(reg *testRegistry) int {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	n := 0
	for _, c := range reg.count {
		n += c
	}
	return n
}

func TestWarmSinglePlatformImage(t *testing.T) {
	reg := newTestRegistry(t)
	ref := reg.ref("single:1")
	pushImage(t, ref, platformImage(t, "linux/amd64", layer(t)))
	w := newWarmer(t, t.TempDir())
	rep, err := w.Warm(context.Background(), items(ref, "linux/amd64", "linux/arm64"))
	if err != nil {
		t.Fatal(err)
	}
	st := statuses(rep)
	if st[ref+" linux/amd64"] != StatusPulled || st[ref+" linux/arm64"] != StatusFailed {
		t.Fatalf("statuses %v", st)
	}
	for _, r := range rep.Results {
		if r.Status == StatusFailed && !strings.Contains(r.Error, "single-platform image for linux/amd64") {
			t.Errorf("error %q does not explain the mismatch", r.Error)
		}
	}
	if rep.OK() {
		t.Error("report OK despite a failed pair")
	}
}

func TestWarmMissingImageFails(t *testing.T) {
	reg := newTestRegistry(t)
	w := newWarmer(t, t.TempDir())
	rep, err := w.Warm(context.Background(), items(reg.ref("nope:1"), "linux/amd64"))
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || rep.Results[0].Error == "" {
		t.Fatalf("want a failure, got %+v", rep.Results)
	}
	if got := reg.n("GET manifest"); got != 1 {
		t.Errorf("404 was retried: %d manifest GETs", got)
	}
}

func TestRefresh(t *testing.T) {
	reg := newTestRegistry(t)
	ref := reg.ref("moving:1")
	pushIndex(t, ref, layer(t), "linux/amd64")
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	dir := t.TempDir()
	warm := func() *Report {
		t.Helper()
		rep, err := newWarmer(t, dir, WithRefresh(24*time.Hour), WithClock(clock)).Warm(context.Background(), items(ref, "linux/amd64"))
		if err != nil || !rep.OK() {
			t.Fatalf("warm: %v %+v", err, rep)
		}
		return rep
	}
	first := warm()

	// Younger than max age: no network at all.
	reg.reset()
	now = now.Add(time.Hour)
	if rep := warm(); rep.Results[0].Status != StatusFresh || sumCounts(reg) != 0 {
		t.Fatalf("young entry: status %s, %d requests", rep.Results[0].Status, sumCounts(reg))
	}

	// Older, unchanged: one HEAD, timestamp renewed.
	reg.reset()
	now = now.Add(48 * time.Hour)
	rep := warm()
	if rep.Results[0].Status != StatusFresh || !rep.Results[0].Revalidated {
		t.Fatalf("old unchanged: %+v", rep.Results[0])
	}
	if reg.n("HEAD manifest") != 1 || reg.n("GET manifest") != 0 || reg.n("GET blob") != 0 {
		t.Fatalf("old unchanged: requests %v", reg.count)
	}
	reg.reset()
	if warm(); sumCounts(reg) != 0 {
		t.Fatalf("renewed entry was checked again: %v", reg.count)
	}

	// The tag moves: pulled again, status updated.
	pushIndex(t, ref, layer(t), "linux/amd64")
	now = now.Add(48 * time.Hour)
	rep = warm()
	if rep.Results[0].Status != StatusUpdated || rep.Results[0].Digest == first.Results[0].Digest {
		t.Fatalf("moved tag: %+v", rep.Results[0])
	}
}

func TestPruneKeepsWhatIsReferenced(t *testing.T) {
	reg := newTestRegistry(t)
	shared := layer(t)
	keep, drop := reg.ref("keep:1"), reg.ref("drop:1")
	pushIndex(t, keep, shared, "linux/amd64")
	pushIndex(t, drop, shared, "linux/amd64")
	dir := t.TempDir()
	w := newWarmer(t, dir)
	if rep, err := w.Warm(context.Background(), append(items(keep, "linux/amd64"), items(drop, "linux/amd64")...)); err != nil || !rep.OK() {
		t.Fatalf("warm: %v", err)
	}
	// A leftover of a killed writer.
	if err := os.WriteFile(filepath.Join(dir, "blobs", "sha256", ".tmp-deadbeef-1"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	pr, err := w.Prune(context.Background(), []string{keep})
	if err != nil {
		t.Fatal(err)
	}
	// drop's index, manifest, config and own layer go; the shared layer stays.
	if len(pr.Entries) != 1 || pr.Blobs != 4 || pr.Temps != 1 {
		t.Fatalf("prune report %+v", pr)
	}
	vr, err := w.Verify(context.Background())
	if err != nil || !vr.OK() {
		t.Fatalf("verify after prune: %v %+v", err, vr)
	}
	reg.reset()
	rep, err := w.Warm(context.Background(), items(keep, "linux/amd64"))
	if err != nil || rep.Results[0].Status != StatusFresh || sumCounts(reg) != 0 {
		t.Fatalf("kept image not intact: %v %+v %v", err, rep.Results, reg.count)
	}
}

// warmedOne pushes a one-layer linux/amd64 image as repo:1, warms it
// into a cache folder of its own and returns the warmer, the reference,
// the cache and the image as cached.
func warmedOne(t *testing.T, repo string) (*Warmer, string, *manifest.Layout, v1.Image) {
	t.Helper()
	reg := newTestRegistry(t)
	ref := reg.ref(repo + ":1")
	pushIndex(t, ref, layer(t), "linux/amd64")
	dir := t.TempDir()
	w := newWarmer(t, dir)
	if rep, err := w.Warm(context.Background(), items(ref, "linux/amd64")); err != nil || !rep.OK() {
		t.Fatal(err)
	}
	l, _ := manifest.OpenLayout(dir)
	img, _, err := l.Image(mustRef(t, ref), platform.MustParse("linux/amd64"))
	if err != nil {
		t.Fatal(err)
	}
	return w, ref, l, img
}

func TestVerifyFindsDamage(t *testing.T) {
	w, ref, l, img := warmedOne(t, "damaged")
	layers, _ := img.Layers()
	d, _ := layers[0].Digest()
	os.Remove(l.BlobPath(d)) // read-only (0444): replaced, not written through
	if err := os.WriteFile(l.BlobPath(d), []byte("corrupt"), 0o644); err != nil {
		t.Fatal(err)
	}
	vr, err := w.Verify(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if vr.OK() || len(vr.Problems) < 2 { // bad hash, and wrong size for its descriptor
		t.Fatalf("verify missed damage: %+v", vr)
	}
	// The next warm notices the wrong size and fetches the blob again.
	rep, err := w.Warm(context.Background(), items(ref, "linux/amd64"))
	if err != nil || !rep.OK() {
		t.Fatal(err)
	}
	if vr, _ := w.Verify(context.Background()); !vr.OK() {
		t.Fatalf("still damaged after re-warm: %+v", vr)
	}
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestConcurrentWarmersShareOneCache(t *testing.T) {
	reg := newTestRegistry(t)
	shared := layer(t)
	refs := []string{reg.ref("c/a:1"), reg.ref("c/b:1"), reg.ref("c/c:1")}
	for _, r := range refs {
		pushIndex(t, r, shared, "linux/amd64", "linux/arm64", "linux/arm/v7")
	}
	dir := t.TempDir()
	plats := [][]string{{"linux/amd64"}, {"linux/arm64"}, {"linux/arm/v7"}, {"linux/amd64", "linux/arm64"}}
	var wg sync.WaitGroup
	var failed atomic.Int32
	for _, ps := range plats {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var its []Item
			for _, r := range refs {
				its = append(its, items(r, ps...)...)
			}
			rep, err := newWarmer(t, dir, WithJobs(2)).Warm(context.Background(), its)
			if err != nil || !rep.OK() {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d warmers failed", failed.Load())
	}
	w := newWarmer(t, dir)
	vr, err := w.Verify(context.Background())
	if err != nil || !vr.OK() {
		t.Fatalf("verify: %v %+v", err, vr)
	}
	// Every platform of every image is filed, whichever warmer wrote last.
	reg.reset()
	var all []Item
	for _, r := range refs {
		all = append(all, items(r, "linux/amd64", "linux/arm64", "linux/arm/v7")...)
	}
	rep, err := w.Warm(context.Background(), all)
	if err != nil || rep.Counts[StatusFresh] != len(all) || sumCounts(reg) != 0 {
		t.Fatalf("after concurrent warms: %v %v requests=%v", err, statuses(rep), reg.count)
	}
}

func TestRefreshKeepsCacheWhenRegistryIsDown(t *testing.T) {
	reg := newTestRegistry(t)
	ref := reg.ref("offline:1")
	pushIndex(t, ref, layer(t), "linux/amd64")
	dir := t.TempDir()
	if rep, err := newWarmer(t, dir).Warm(context.Background(), items(ref, "linux/amd64")); err != nil || !rep.OK() {
		t.Fatalf("warm: %v", err)
	}
	// The registry now refuses everything.
	fast, err := manifest.NewClient(manifest.WithBackoff(manifest.Backoff{Attempts: 1, Initial: time.Millisecond, Max: time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer down.Close()
	moved := strings.Replace(ref, reg.host, strings.TrimPrefix(down.URL, "http://"), 1)
	// File the same content under the down registry's name so only the network differs.
	if _, err := newWarmer(t, dir).Warm(context.Background(), items(ref, "linux/amd64")); err != nil {
		t.Fatal(err)
	}
	l, _ := manifest.OpenLayout(dir)
	err = l.UpdateIndex(context.Background(), func(idx *v1.IndexManifest) (bool, error) {
		d := idx.Manifests[0]
		d.Annotations = map[string]string{}
		for k, v := range idx.Manifests[0].Annotations {
			d.Annotations[k] = v
		}
		d.Annotations[manifest.AnnotationRefName] = manifest.CacheKey(mustRef(t, moved))
		idx.Manifests = append(idx.Manifests, d)
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := newWarmer(t, dir, WithClient(fast), WithRefresh(0)).Warm(context.Background(), items(moved, "linux/amd64"))
	if err != nil {
		t.Fatal(err)
	}
	r := rep.Results[0]
	if !rep.OK() || r.Status != StatusFresh || !strings.Contains(r.Warning, "could not revalidate") {
		t.Fatalf("want fresh with a warning, got %+v", r)
	}
}

// Damage a stat cannot see (same size, mtime put back, as bit rot) is
// found by --verify, which drops the blob's mark so that builds hash the
// blob again and refuse it; a good blob keeps its mark.
func TestVerifyDropsTheMarkOfADamagedBlob(t *testing.T) {
	w, _, l, img := warmedOne(t, "rot")
	layers, _ := img.Layers()
	d, _ := layers[0].Digest()
	p := l.BlobPath(d)
	const mark = "user.kiln.verified"
	if _, err := unix.Getxattr(p, mark, make([]byte, 256)); errors.Is(err, unix.ENOTSUP) {
		t.Skip("no user xattrs on this filesystem")
	} else if err != nil {
		t.Fatalf("a warmed blob carries no mark: %v", err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0}, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Chtimes(p, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o444); err != nil {
		t.Fatal(err)
	}
	vr, err := w.Verify(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if vr.OK() {
		t.Fatalf("verify missed damage of the same size and mtime")
	}
	if _, err := unix.Getxattr(p, mark, make([]byte, 256)); !errors.Is(err, unix.ENODATA) {
		t.Errorf("the damaged blob's mark: %v, want it dropped", err)
	}
	m, _ := img.Manifest()
	if _, err := unix.Getxattr(l.BlobPath(m.Config.Digest), mark, make([]byte, 256)); err != nil {
		t.Errorf("a good blob's mark after verify: %v", err)
	}
}

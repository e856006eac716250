package warmer

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"kiln/manifest"
	"kiln/platform"
)

// blobsOf lists the digests of an image in the cache: manifest, config,
// layers.
func blobsOf(t *testing.T, dir, ref string) []v1.Hash {
	t.Helper()
	l, err := manifest.OpenLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, desc, err := l.Image(mustRef(t, ref), platform.MustParse("linux/amd64"))
	if err != nil {
		t.Fatal(err)
	}
	data, err := l.ReadBlob(desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	kids, err := manifest.Children(desc.MediaType, data)
	if err != nil {
		t.Fatal(err)
	}
	out := []v1.Hash{desc.Digest}
	for _, k := range kids {
		out = append(out, k.Digest)
	}
	return out
}

func present(dir string, h v1.Hash) bool {
	_, err := os.Stat(filepath.Join(dir, "blobs", h.Algorithm, h.Hex))
	return err == nil
}

// TestPruneGrace: with a grace period, prune keeps the blobs of entries
// that left index.json within it — dropped by this prune, or replaced by a
// warm whose tag moved — and deletes them once it is over.
func TestPruneGrace(t *testing.T) {
	reg := newTestRegistry(t)
	keep, drop := reg.ref("keep:1"), reg.ref("drop:1")
	pushIndex(t, keep, layer(t), "linux/amd64")
	pushIndex(t, drop, layer(t), "linux/amd64")
	now := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	dir := t.TempDir()
	w := newWarmer(t, dir, WithClock(clock), WithRefresh(0), WithPruneGrace(time.Hour))
	ctx := context.Background()
	if rep, err := w.Warm(ctx, append(items(keep, "linux/amd64"), items(drop, "linux/amd64")...)); err != nil || !rep.OK() {
		t.Fatalf("warm: %v %+v", err, rep)
	}
	oldKeep, dropped := blobsOf(t, dir, keep), blobsOf(t, dir, drop)

	now = now.Add(time.Minute)
	pushIndex(t, keep, layer(t), "linux/amd64") // the tag moves
	if rep, err := w.Warm(ctx, items(keep, "linux/amd64")); err != nil || rep.Results[0].Status != StatusUpdated {
		t.Fatalf("warm of a moved tag: %v %+v", err, rep)
	}
	pr, err := w.Prune(ctx, []string{keep})
	if err != nil {
		t.Fatal(err)
	}
	if len(pr.Entries) != 1 || pr.Blobs != 0 || pr.Grace == 0 {
		t.Fatalf("prune within the grace period: %+v, want one entry dropped, no blob deleted", pr)
	}
	for _, h := range append(oldKeep, dropped...) {
		if !present(dir, h) {
			t.Errorf("prune deleted %s within the grace period", h)
		}
	}
	if vr, err := w.Verify(ctx); err != nil || !vr.OK() {
		t.Fatalf("verify: %v %+v", err, vr)
	}

	now = now.Add(30 * time.Minute) // the replaced image left 31 minutes ago, the dropped one 30
	if pr, err := w.Prune(ctx, []string{keep}); err != nil || pr.Blobs != 0 {
		t.Fatalf("second prune within the grace period: %v %+v", err, pr)
	}
	now = now.Add(time.Hour)
	pr, err = w.Prune(ctx, []string{keep})
	if err != nil {
		t.Fatal(err)
	}
	if pr.Blobs == 0 || pr.Grace != 0 {
		t.Fatalf("prune after the grace period: %+v, want the retired blobs deleted", pr)
	}
	for _, h := range append(oldKeep[:2], dropped...) { // the old manifest and config, and all of drop's
		if present(dir, h) {
			t.Errorf("prune after the grace period kept %s", h)
		}
	}
	l, _ := manifest.OpenLayout(dir)
	if r, err := l.Retired(); err != nil || len(r) != 0 {
		t.Errorf("retired entries after the grace period: %v %v", r, err)
	}
	if vr, err := w.Verify(ctx); err != nil || !vr.OK() {
		t.Fatalf("verify: %v %+v", err, vr)
	}
}

// TestWarmRepairsModes: blobs an older kiln left private (0600) are made
// readable by the next warm, in place, without a download.
func TestWarmRepairsModes(t *testing.T) {
	reg := newTestRegistry(t)
	ref := reg.ref("old:1")
	pushIndex(t, ref, layer(t), "linux/amd64")
	dir := t.TempDir()
	w := newWarmer(t, dir)
	if rep, err := w.Warm(context.Background(), items(ref, "linux/amd64")); err != nil || !rep.OK() {
		t.Fatalf("warm: %v", err)
	}
	blobs := blobsOf(t, dir, ref)
	for _, h := range blobs {
		if err := os.Chmod(filepath.Join(dir, "blobs", "sha256", h.Hex), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	vr, err := w.Verify(context.Background())
	if err != nil || !vr.OK() || vr.Private != len(blobs) {
		t.Fatalf("verify of private blobs: %v %+v, want OK with %d private", err, vr, len(blobs))
	}
	reg.reset()
	if rep, err := w.Warm(context.Background(), items(ref, "linux/amd64")); err != nil || !rep.OK() || sumCounts(reg) != 0 {
		t.Fatalf("re-warm: %v %+v, %v requests", err, rep, reg.count)
	}
	for _, h := range blobs {
		fi, err := os.Stat(filepath.Join(dir, "blobs", "sha256", h.Hex))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o444 {
			t.Errorf("blob %s: mode %v after a warm, want 0444", h, fi.Mode())
		}
	}
}

// TestVerifyRepair: Verify WithRepair deletes a blob whose content does
// not match its name, even one of the right size (a warm would trust it),
// so that the next warm fetches it again, alone.
func TestVerifyRepair(t *testing.T) {
	reg := newTestRegistry(t)
	ref := reg.ref("damaged:1")
	pushIndex(t, ref, layer(t), "linux/amd64")
	dir := t.TempDir()
	w := newWarmer(t, dir)
	ctx := context.Background()
	if rep, err := w.Warm(ctx, items(ref, "linux/amd64")); err != nil || !rep.OK() {
		t.Fatalf("warm: %v", err)
	}
	blobs := blobsOf(t, dir, ref)
	bad := blobs[len(blobs)-1]
	path := filepath.Join(dir, "blobs", "sha256", bad.Hex)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[0] ^= 0xff
	os.Remove(path)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	reg.reset()
	if rep, err := w.Warm(ctx, items(ref, "linux/amd64")); err != nil || sumCounts(reg) != 0 || !present(dir, bad) {
		t.Fatalf("a warm should trust a stored blob of the right size: %v %+v %v", err, rep, reg.count)
	}
	vr, err := w.Verify(ctx, WithRepair())
	if err != nil {
		t.Fatal(err)
	}
	if vr.OK() || vr.Repair == nil || vr.Repair.Removed != 1 || !vr.Problems[0].Removed {
		t.Fatalf("verify --repair: %+v %+v, want the damaged blob removed", vr, vr.Repair)
	}
	if present(dir, bad) {
		t.Fatalf("the damaged blob %s is still there", bad)
	}
	reg.reset()
	if rep, err := w.Warm(ctx, items(ref, "linux/amd64")); err != nil || !rep.OK() {
		t.Fatalf("warm after repair: %v %+v", err, rep)
	}
	if n := reg.n("GET blob"); n != 1 {
		t.Errorf("the warm after the repair fetched %d blobs, want 1", n)
	}
	if vr, err := w.Verify(ctx); err != nil || !vr.OK() {
		t.Fatalf("verify after the warm: %v %+v", err, vr)
	}
}

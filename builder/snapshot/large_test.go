package snapshot

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The measured case of the issue: a RUN that changes 10 files of 50,000.
const (
	wideDirs    = 200
	wideFiles   = 250 // per directory
	wideChanged = 10
)

// wideRoot returns an empty directory for a wide tree: a private tmpfs
// when this process may mount one, so that making and removing 50,000
// files does not dominate the run on a slow disk.
func wideRoot(tb testing.TB) string {
	tb.Helper()
	dir := tb.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "mode=755"); err != nil {
		tb.Logf("no tmpfs (%v): building on %s", err, dir)
		return dir
	}
	tb.Cleanup(func() { must(tb, unix.Unmount(dir, unix.MNT_DETACH)) })
	return dir
}

// makeWide builds wideDirs×wideFiles small files under dir.
func makeWide(tb testing.TB, dir string) {
	tb.Helper()
	for i := range wideDirs {
		sub := filepath.Join(dir, fmt.Sprintf("d%03d", i))
		must(tb, os.Mkdir(sub, 0o755))
		for j := range wideFiles {
			mustWrite(tb, filepath.Join(sub, fmt.Sprintf("f%03d", j)), fmt.Sprintf("file %d/%d\n", i, j), 0o644)
		}
	}
}

// age waits until a tree just made is older than recentWindow, as a base
// unpacked before the step is: Walk then reads no xattrs.
func age() { time.Sleep(recentWindow + 100*time.Millisecond) }

// changeWide changes wideChanged files spread over the tree; round makes
// each call's content new.
func changeWide(tb testing.TB, root string, round int) {
	tb.Helper()
	for k := range wideChanged {
		p := filepath.Join(root, fmt.Sprintf("d%03d/f%03d", k*wideDirs/wideChanged, k))
		mustWrite(tb, p, fmt.Sprintf("changed in round %d\n", round), 0)
	}
}

// TestLargeTreeSmallChange: both strategies find the 10 files of 50,000,
// give the same layer, and Overlay looks at little more than the change.
func TestLargeTreeSmallChange(t *testing.T) {
	if testing.Short() {
		t.Skip("builds 50,000 files")
	}
	ctx := context.Background()
	sde := time.Now().Add(-time.Hour) // clamps every mtime: the trees are made at different times
	opts := Options{SourceDateEpoch: &sde}

	root := wideRoot(t)
	makeWide(t, root)
	age()
	w := NewWalk(root, opts)
	start := time.Now()
	must(t, w.Before(ctx))
	before := time.Since(start)
	changeWide(t, root, 1)
	var walkLayer bytes.Buffer
	start = time.Now()
	ws, err := w.Diff(ctx, &walkLayer)
	must(t, err)
	t.Logf("walk: Before %v, Diff %v, %+v", before, time.Since(start), *ws)
	if ws.Files != wideChanged || ws.Scanned < wideDirs*wideFiles {
		t.Errorf("walk: %+v, want %d files of %d scanned", *ws, wideChanged, wideDirs*wideFiles)
	}

	oroot := wideRoot(t)
	makeWide(t, oroot)
	o := mountOverlayForTest(t, oroot, opts)
	merged, err := o.Mount(ctx)
	must(t, err)
	changeWide(t, merged, 1)
	var overlayLayer bytes.Buffer
	start = time.Now()
	ost, err := o.Diff(ctx, &overlayLayer)
	must(t, err)
	t.Logf("overlay: Diff %v, %+v", time.Since(start), *ost)
	if ost.Files != wideChanged || ost.Scanned > 2*wideChanged {
		t.Errorf("overlay: %+v, want %d files and at most %d scanned", *ost, wideChanged, 2*wideChanged)
	}
	if !bytes.Equal(walkLayer.Bytes(), overlayLayer.Bytes()) {
		t.Errorf("layers differ:\nwalk    %q\noverlay %q", entryNames(readLayer(t, walkLayer.Bytes())), entryNames(readLayer(t, overlayLayer.Bytes())))
	}
}

func BenchmarkWalkBefore50k(b *testing.B) {
	root := wideRoot(b)
	makeWide(b, root)
	age()
	w := NewWalk(root, Options{})
	b.ResetTimer()
	for b.Loop() {
		must(b, w.Before(context.Background()))
	}
}

func BenchmarkWalkDiff50k(b *testing.B) {
	ctx := context.Background()
	root := wideRoot(b)
	makeWide(b, root)
	age()
	w := NewWalk(root, Options{})
	var stats *Stats
	round := 0
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		must(b, w.Before(ctx))
		round++
		changeWide(b, root, round)
		b.StartTimer()
		var err error
		stats, err = w.Diff(ctx, io.Discard)
		must(b, err)
	}
	b.ReportMetric(float64(stats.Scanned), "scanned/op")
	b.ReportMetric(float64(stats.Files), "files/op")
}

func BenchmarkOverlayDiff50k(b *testing.B) {
	ctx := context.Background()
	root := wideRoot(b)
	makeWide(b, root)
	age()
	o := mountOverlayForTest(b, root, Options{})
	var stats *Stats
	round := 0
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		merged, err := o.Mount(ctx)
		must(b, err)
		round++
		changeWide(b, merged, round)
		b.StartTimer()
		stats, err = o.Diff(ctx, io.Discard)
		must(b, err)
	}
	b.ReportMetric(float64(stats.Scanned), "scanned/op")
	b.ReportMetric(float64(stats.Files), "files/op")
}

package test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"kiln/test/harness"
)

// TestWarmFullVolume is issue 18's report: on a 50 MB cache volume, every
// failed `kiln warm` left its partial blob behind, until a 13 MB image no
// longer fit. Now a warm that runs out of room says so, exits 1 and leaves
// no temp file; and what killed warms left (kill -9 cannot clean up) is
// removed by the next warm before it downloads, so the volume recovers by
// itself.
func TestWarmFullVolume(t *testing.T) {
	t.Parallel()
	const volume = 50 << 20
	cache := filepath.Join(mountTmpfs(t, volume), "cache")
	reg := harness.NewRegistry(t)
	small, big := reg.Ref("full/small:1"), reg.Ref("full/big:1")
	// About 13 MB of incompressible layers, and two 40 MB layers that
	// cannot both fit: they download together, and when one fails for lack
	// of room the other is midway (the partial file the report saw).
	pushImage(t, small, harness.ImageSpec{Layers: layers(18001, 2, 13<<20/2)})
	pushImage(t, big, harness.ImageSpec{Layers: layers(18101, 2, 40<<20)})
	warm := func(ref string, extra ...string) []string {
		return append([]string{"warm", "--cache-dir", cache, "--image", ref, "--platform", "linux/amd64"}, extra...)
	}

	for i := 1; i <= 3; i++ {
		r := runKiln(t, warm(big)...)
		mustExit(t, r, 1)
		if !strings.Contains(r.stderr, "is full") || !strings.Contains(r.stderr, cache) || !strings.Contains(r.stderr, "free of") {
			t.Errorf("failure %d: stderr should say that the volume holding %s is full, and how full:\n%s", i, cache, r)
		}
		if i == 1 {
			t.Logf("the failure says:\n%s", r.stderr)
		}
		if n := countTemps(t, cache); n != 0 {
			t.Fatalf("failure %d left %d temp files (%d bytes free)", i, n, freeBytes(t, cache))
		}
	}
	t.Logf("after three failures: %d bytes free of %d", freeBytes(t, cache), volume)

	// A warm killed in the middle of a download (the proxy stalls every blob
	// halfway) leaves its temp file; so did, say, three earlier kills of
	// bigger transfers, which leave too little room for the small image.
	stalling := harness.NewFaultProxy(t, reg.Addr, harness.Faults{Stall: 1, MaxFaultsPerPath: 1 << 30})
	killMidDownload(t, cache, warm(stalling.Addr+"/full/big:1", "--stall-timeout", "10m")...)
	killed := countTemps(t, cache)
	if killed == 0 {
		t.Fatal("the killed warm left no temp file: the test kills too late")
	}
	blobs := filepath.Join(cache, "blobs", "sha256")
	for i := range 4 {
		writeDeadTemp(t, filepath.Join(blobs, fmt.Sprintf(".tmp-%012x-%d", 0xdead0+i, 100+i)), 10<<20)
	}
	free := freeBytes(t, cache)
	t.Logf("with %d dead temp files: %d bytes free", killed+4, free)
	if free >= 13<<20 {
		t.Fatalf("the dead temp files leave %d bytes free: the small image would fit without a sweep", free)
	}

	rep := filepath.Join(t.TempDir(), "report.json")
	mustExit(t, runKiln(t, warm(small, "--report", rep)...), 0)
	wantStatuses(t, readReport(t, rep), map[string]string{small + " linux/amd64": "pulled"})
	if n := countTemps(t, cache); n != 0 {
		t.Errorf("%d temp files left after a successful warm", n)
	}
	r := runKiln(t, "warm", "--verify", "--cache-dir", cache)
	mustExit(t, r, 0)
	if !strings.Contains(r.stdout, "0 problems, 0 leftover temp files") {
		t.Errorf("verify should report a clean cache with no leftovers:\n%s", r)
	}
	validateCache(t, cache)
}

// TestWarmSIGTERMRemovesTemps: a warm stopped with SIGTERM in the middle of
// its downloads (a pod being deleted) removes its partial files before it
// exits.
func TestWarmSIGTERMRemovesTemps(t *testing.T) {
	t.Parallel()
	reg := harness.NewRegistry(t)
	ref := reg.Ref("term/app:1")
	// An index: the config and the layers are then fetched together.
	pushIndex(t, ref, harness.ImageSpec{Platform: "linux/amd64", Layers: layers(18201, 3, 1<<20)})
	stalling := harness.NewFaultProxy(t, reg.Addr, harness.Faults{Stall: 1, MaxFaultsPerPath: 1 << 30})
	cache := filepath.Join(t.TempDir(), "cache")

	ctx, cancel := context.WithTimeout(t.Context(), defaultTimeout)
	defer cancel()
	cmd, stdout, stderr := kilnCmd(t, ctx, runOpts{}, "warm", "--cache-dir", cache, "--stall-timeout", "10m",
		"--image", stalling.Addr+"/term/app:1", "--platform", "linux/amd64")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	waitForTemps(t, cache, 3, done) // the config and at least two layers midway
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if code := exitCode(err); code != 1 {
			t.Errorf("exit %d after SIGTERM, want 1\n--- stdout\n%s--- stderr\n%s", code, stdout, stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("kiln warm did not exit within 30s of SIGTERM")
	}
	if n := countTemps(t, cache); n != 0 {
		t.Errorf("SIGTERM left %d temp files\n--- stderr\n%s", n, stderr)
	}
	verifyCache(t, cache)
}

// mountTmpfs mounts a tmpfs of size bytes on a new folder, unmounted when
// the test ends. Mounting needs root (CI runs the tests as root).
func mountTmpfs(t *testing.T, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("needs root to mount a %d MB tmpfs as a small cache volume (CI runs the tests as root)", size>>20)
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, fmt.Sprintf("size=%d,mode=0755", size)); err != nil {
		t.Fatalf("mounting a tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Logf("unmounting %s: %v; detaching it", dir, err)
			unix.Unmount(dir, unix.MNT_DETACH)
		}
	})
	return dir
}

func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// writeDeadTemp writes what a killed transfer leaves: a temp file of size
// bytes that no process holds.
func writeDeadTemp(t *testing.T, path string, size int) {
	t.Helper()
	err := os.WriteFile(path, bytes.Repeat([]byte{0x5a}, size), 0o600)
	if errors.Is(err, syscall.ENOSPC) {
		// The volume is full already (the killed warm's temp file grew
		// further on a slow machine): the partial file stays, as a dead
		// write's would, and the volume is as full as the test wants.
		return
	}
	if err != nil {
		t.Fatal(err)
	}
}

// killMidDownload starts kiln, waits until it has a partial blob in cache,
// and kills it with SIGKILL.
func killMidDownload(t *testing.T, cache string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), defaultTimeout)
	defer cancel()
	cmd, _, stderr := kilnCmd(t, ctx, runOpts{}, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	waitForTemps(t, cache, 1, done)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatal(err)
	}
	if err := <-done; exitCode(err) != -1 {
		t.Fatalf("kiln was not killed: %v\n%s", err, stderr)
	}
}

// waitForTemps waits until the cache holds n temp files with bytes in
// them; kiln exiting first fails the test.
func waitForTemps(t *testing.T, cache string, n int, exited <-chan error) {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		if partialTemps(t, cache) >= n {
			return
		}
		select {
		case err := <-exited:
			t.Fatalf("kiln exited (%v) before it had %d partial blobs", err, n)
		case <-deadline:
			t.Fatalf("no %d partial blobs in %s after a minute", n, cache)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// partialTemps counts the temp files under blobs/sha256 that hold bytes.
func partialTemps(t *testing.T, cache string) int {
	t.Helper()
	n := 0
	for _, e := range readDirOrEmpty(t, filepath.Join(cache, "blobs", "sha256")) {
		if fi, err := e.Info(); err == nil && strings.HasPrefix(e.Name(), ".tmp-") && fi.Size() > 0 {
			n++
		}
	}
	return n
}

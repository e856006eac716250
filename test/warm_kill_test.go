package test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"kiln/test/harness"
)

var killSeed = flag.Uint64("kill-seed", 0, "seed of TestWarmKill9's kill moments (0: from the clock)")

// TestWarmKill9 kills `kiln warm` with SIGKILL at random moments, on the
// same cache each time: after every kill the cache must verify clean (a
// killed run may leave temp files, nothing worse), and a final warm must
// complete. The registry sits behind a fault proxy whose only "fault" is a
// 60ms pause in the middle of every blob, so that kills land inside
// transfers, between blobs and around index.json updates alike.
func TestWarmKill9(t *testing.T) {
	t.Parallel()
	seed := *killSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("kill seed %d (rerun with -kill-seed=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))

	reg := harness.NewRegistry(t)
	pushStandard(t, reg.Addr)
	// About 60 MB over two platforms, five layers each.
	pushIndex(t, reg.Ref("big/multi:1"),
		harness.ImageSpec{Platform: "linux/amd64", Layers: layers(3001, 5, 6<<20)},
		harness.ImageSpec{Platform: "linux/arm64", Layers: layers(3101, 5, 6<<20)})
	// Small images queued around the big one: their index.json updates
	// happen while big blobs are in flight.
	for i := range 3 {
		pushIndex(t, reg.Ref(fmt.Sprintf("small/%d:1", i)),
			harness.ImageSpec{Platform: "linux/amd64", Layers: layers(int64(3201+10*i), 2, 64<<10)},
			harness.ImageSpec{Platform: "linux/arm64", Layers: layers(int64(3301+10*i), 2, 64<<10)})
	}
	slow := harness.NewFaultProxy(t, reg.Addr, harness.Faults{
		Seed: int64(seed), Stall: 1, StallFor: 60 * time.Millisecond, MaxFaultsPerPath: 1 << 30,
	})
	var refs []string
	for _, r := range []string{"small/0:1", "big/multi:1", "base/multi:1", "small/1:1", "app/shares:1", "small/2:1"} {
		refs = append(refs, slow.Addr+"/"+r)
	}
	warmArgs := func(cache string) []string {
		args := []string{"warm", "--cache-dir", cache, "--jobs", "4", "--platform", "linux/amd64,linux/arm64"}
		for _, r := range refs {
			args = append(args, "--image", r)
		}
		return args
	}
	cache := filepath.Join(t.TempDir(), "cache")
	args := warmArgs(cache)

	// How long a whole warm takes here, so that kill moments fall inside
	// one however fast the machine is.
	start := time.Now()
	mustExit(t, runKiln(t, warmArgs(filepath.Join(t.TempDir(), "baseline"))...), 0)
	full := time.Since(start)
	maxDelay := full * 4 / 5
	t.Logf("a whole warm takes %v: kill moments between 20ms and %v", full.Round(time.Millisecond), maxDelay.Round(time.Millisecond))

	// Kills accumulate on one cache, each run resuming what the last one
	// left. A run that finishes before its kill has completed the cache:
	// it is verified, then the cache starts over and the moments shrink.
	const kills, attempts = 12, 40
	killed := 0
	for i := 0; i < attempts && killed < kills; i++ {
		delay := 20*time.Millisecond + time.Duration(rng.Int64N(int64(max(maxDelay-20*time.Millisecond, time.Millisecond))))
		res := killAfter(t, delay, args...)
		if res.killed {
			killed++
		}
		t.Logf("run %d: SIGKILL after %v: killed=%v exit=%d; %d entries, %d blobs, %d temp files",
			i+1, delay.Round(time.Millisecond), res.killed, res.code, countEntries(t, cache), countBlobs(t, cache), countTemps(t, cache))
		if !res.killed && res.code != 0 {
			t.Fatalf("run %d finished before the kill, with exit %d:\n%s", i+1, res.code, res.stderr)
		}
		if _, err := os.Stat(cache); errors.Is(err, fs.ErrNotExist) && res.killed {
			// Killed before the layout was renamed into place: there is
			// nothing to verify, and --verify rightly refuses a missing
			// folder rather than calling it an empty cache.
			t.Logf("run %d: killed before the cache existed", i+1)
			continue
		}
		verifyCache(t, cache)
		if !res.killed {
			validateCache(t, cache)
			if err := os.RemoveAll(cache); err != nil {
				t.Fatal(err)
			}
			maxDelay = max(maxDelay*7/10, 40*time.Millisecond)
			t.Logf("the cache was complete: starting over on an empty one, kill moments up to %v", maxDelay.Round(time.Millisecond))
		}
	}
	if killed < kills {
		t.Errorf("only %d of %d kills landed while kiln was running, in %d attempts", killed, kills, attempts)
	}

	rep := filepath.Join(t.TempDir(), "report.json")
	r := runKiln(t, append(args, "--report", rep)...)
	mustExit(t, r, 0)
	got := readReport(t, rep)
	for _, res := range got.Results {
		if res.Status != "pulled" && res.Status != "fresh" {
			t.Errorf("final warm: %s %s is %s: %s", res.Ref, res.Platform, res.Status, res.Error)
		}
	}
	if len(got.Results) != len(refs)*2 {
		t.Errorf("final warm: %d results, want %d", len(got.Results), len(refs)*2)
	}
	verifyCache(t, cache)
	validateCache(t, cache)
	t.Logf("proxy: %v", slow.Counts())
}

type killResult struct {
	killed bool
	code   int
	stderr string
}

// killAfter starts kiln, sends SIGKILL to its PID after delay unless it has
// finished, and waits for it.
func killAfter(t *testing.T, delay time.Duration, args ...string) killResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), defaultTimeout)
	defer cancel()
	cmd, _, stderr := kilnCmd(t, ctx, runOpts{}, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return killResult{code: exitCode(err), stderr: stderr.String()}
	case <-time.After(delay):
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("killing kiln pid %d: %v", cmd.Process.Pid, err)
	}
	err := <-done
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			return killResult{killed: true, code: -1, stderr: stderr.String()}
		}
	}
	return killResult{code: exitCode(err), stderr: stderr.String()}
}

// countEntries counts index.json's entries; 0 before it exists.
func countEntries(t *testing.T, cache string) int {
	t.Helper()
	if _, err := os.Stat(filepath.Join(cache, "index.json")); err != nil {
		return 0
	}
	return len(readIndex(t, cache).Manifests)
}

// countBlobs counts the complete blobs under blobs/sha256.
func countBlobs(t *testing.T, cache string) int {
	t.Helper()
	n := 0
	for _, e := range readDirOrEmpty(t, filepath.Join(cache, "blobs", "sha256")) {
		if !strings.HasPrefix(e.Name(), ".") {
			n++
		}
	}
	return n
}

// countTemps counts the temp files interrupted writes left behind.
func countTemps(t *testing.T, cache string) int {
	t.Helper()
	n := 0
	for _, dir := range []string{cache, filepath.Join(cache, "blobs", "sha256")} {
		for _, e := range readDirOrEmpty(t, dir) {
			if strings.HasPrefix(e.Name(), ".tmp-") {
				n++
			}
		}
	}
	return n
}

func readDirOrEmpty(t *testing.T, dir string) []os.DirEntry {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return es
}

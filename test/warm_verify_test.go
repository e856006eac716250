package test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"kiln/test/harness"
)

// TestWarmVerifyFindsDamage damages a warmed cache in the ways a disk or a
// person can, and checks that `kiln warm --verify` exits 1 naming the blob,
// and that a missing or truncated blob is fetched again by the next warm.
func TestWarmVerifyFindsDamage(t *testing.T) {
	t.Parallel()
	reg := harness.NewRegistry(t)
	ref := reg.Ref("verify/app:1")
	pushIndex(t, ref,
		harness.ImageSpec{Platform: "linux/amd64", Layers: layers(10001, 2, 64<<10)},
		harness.ImageSpec{Platform: "linux/arm64", Layers: layers(10011, 2, 64<<10)})
	warmArgs := func(cache string) []string {
		return []string{"warm", "--cache-dir", cache, "--image", ref, "--platform", "linux/amd64,linux/arm64"}
	}

	tests := []struct {
		name    string
		damage  func(path string) error
		want    string // in the verify output
		repairs bool   // a plain warm fetches the blob again
	}{
		{
			name: "flipped byte",
			damage: func(p string) error {
				data, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				data[len(data)/2] ^= 0xff
				return os.WriteFile(p, data, 0o644)
			},
			want: "hashes to",
		},
		{name: "deleted", damage: os.Remove, want: "missing", repairs: true},
		{name: "truncated", damage: func(p string) error { return os.Truncate(p, 100) }, want: "", repairs: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cache := filepath.Join(t.TempDir(), "cache")
			mustExit(t, runKiln(t, warmArgs(cache)...), 0)
			layer := imageBlobs(t, cache, entryManifests(t, cache, ref)["linux/arm64"].Digest)[2]
			if err := tc.damage(blobPath(cache, layer)); err != nil {
				t.Fatal(err)
			}
			rep := filepath.Join(t.TempDir(), "verify.json")
			r := runKiln(t, "warm", "--verify", "--cache-dir", cache, "--report", rep)
			mustExit(t, r, 1)
			if !strings.Contains(r.output(), layer.String()) || !strings.Contains(r.output(), tc.want) {
				t.Errorf("verify output should name %s and say %q:\n%s", layer, tc.want, r)
			}
			var vr struct {
				Verify struct {
					Problems []struct {
						Digest string `json:"digest"`
					} `json:"problems"`
				} `json:"verify"`
			}
			data, err := os.ReadFile(rep)
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(data, &vr); err != nil || len(vr.Verify.Problems) == 0 {
				t.Errorf("verify report lists no problem (%v):\n%s", err, data)
			}
			if !tc.repairs {
				return
			}
			mustExit(t, runKiln(t, warmArgs(cache)...), 0)
			verifyCache(t, cache)
		})
	}
}

// TestWarmVerifyMissingCache: verifying a folder that holds no cache (a
// typo, a volume that was not mounted) is an error, and creates nothing.
func TestWarmVerifyMissingCache(t *testing.T) {
	t.Parallel()
	cache := filepath.Join(t.TempDir(), "not-mounted")
	r := runKiln(t, "warm", "--verify", "--cache-dir", cache)
	if r.code == 0 {
		t.Errorf("verify of a folder that does not exist: exit 0, want an error:\n%s", r)
	}
	if _, err := os.Stat(cache); err == nil {
		t.Errorf("verify created %s", cache)
	}
}

// TestWarmRemovesStaleTemps: temp files of killed writes are removed by the
// next warm whatever their age, a few seconds or hours; one a live writer
// holds (its flock, as kiln's writers take) is not, and verify reports it
// as a write in progress, not a leftover.
func TestWarmRemovesStaleTemps(t *testing.T) {
	t.Parallel()
	reg := harness.NewRegistry(t)
	ref := reg.Ref("temps/app:1")
	pushIndex(t, ref, harness.ImageSpec{Platform: "linux/amd64", Layers: layers(10101, 1, 32<<10)})
	cache := filepath.Join(t.TempDir(), "cache")
	args := []string{"warm", "--cache-dir", cache, "--image", ref, "--platform", "linux/amd64"}
	mustExit(t, runKiln(t, args...), 0)
	blobs := filepath.Join(cache, "blobs", "sha256")
	stale := filepath.Join(blobs, ".tmp-0123456789ab-stale")
	recent := filepath.Join(blobs, ".tmp-0123456789ab-recent")
	index := filepath.Join(cache, ".tmp-index.json-recent")
	live := filepath.Join(blobs, ".tmp-0123456789ab-live")
	for _, p := range []string{stale, recent, index, live} {
		if err := os.WriteFile(p, []byte("half a blob"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-3 * time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(live)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}

	r := runKiln(t, "warm", "--verify", "--cache-dir", cache)
	mustExit(t, r, 0) // temp files are no damage
	if !strings.Contains(r.stdout, "3 leftover temp files (33 B), 1 write in progress") {
		t.Errorf("verify should count 3 leftovers and 1 live write:\n%s", r)
	}
	mustExit(t, runKiln(t, args...), 0)
	for _, p := range []string{stale, recent, index} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("warm left the dead temp file %s", p)
		}
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("warm removed a temp file a live writer holds: %v", err)
	}
	verifyCache(t, cache)
}

// TestWarmRefusesForeignFolder: a cache folder that holds other files and
// no OCI layout (a wrong --cache-dir) is refused, and nothing is written
// into it.
func TestWarmRefusesForeignFolder(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"notes.txt": "not a cache\n"})
	for _, args := range [][]string{
		{"warm", "--cache-dir", dir, "--image", "127.0.0.1:9/x:1", "--platform", "linux/amd64"},
		{"warm", "--verify", "--cache-dir", dir},
	} {
		r := runKiln(t, args...)
		if r.code == 0 {
			t.Errorf("exit 0 for a folder that is not a cache:\n%s", r)
		}
		if got := snapshot(t, dir); len(got) != 1 {
			t.Errorf("kiln wrote into a folder that is not a cache: %v", got)
		}
	}
}

// TestWarmVerifyWhileWarming: verify runs beside warmers (a CronJob beside
// init containers) and must never report damage in a cache that is only
// being filled.
func TestWarmVerifyWhileWarming(t *testing.T) {
	t.Parallel()
	reg := harness.NewRegistry(t)
	pushStandard(t, reg.Addr)
	for i := range 3 {
		pushIndex(t, reg.Ref(fmt.Sprintf("busy/img%d:1", i)),
			harness.ImageSpec{Platform: "linux/amd64", Layers: layers(int64(17000+100*i), 3, 512<<10)},
			harness.ImageSpec{Platform: "linux/arm64", Layers: layers(int64(17050+100*i), 3, 512<<10)})
	}
	slow := harness.NewFaultProxy(t, reg.Addr, harness.Faults{Stall: 1, StallFor: 50 * time.Millisecond, MaxFaultsPerPath: 1 << 30})
	cache := filepath.Join(t.TempDir(), "cache")
	mustExit(t, runKiln(t, "warm", "--cache-dir", cache, "--image", slow.Addr+"/base/multi:1", "--platform", "linux/amd64"), 0)
	ctx, cancel := context.WithTimeout(t.Context(), defaultTimeout)
	defer cancel()
	var warmers []*exec.Cmd
	for _, plats := range []string{"linux/amd64", "linux/arm64,linux/amd64"} {
		args := []string{"warm", "--cache-dir", cache, "--jobs", "2", "--platform", plats, "--image", slow.Addr + "/app/shares:1"}
		for i := range 3 {
			args = append(args, "--image", fmt.Sprintf("%s/busy/img%d:1", slow.Addr, i))
		}
		cmd, _, _ := kilnCmd(t, ctx, runOpts{}, args...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		warmers = append(warmers, cmd)
	}
	done := make(chan error, len(warmers))
	for _, c := range warmers {
		go func() { done <- c.Wait() }()
	}
	verifies, finished := 0, 0
	for finished < len(warmers) {
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("warmer: %v", err)
			}
			finished++
		default:
			verifyCache(t, cache)
			verifies++
		}
	}
	t.Logf("%d verifies ran while the warmers did", verifies)
	verifyCache(t, cache)
	validateCache(t, cache)
}

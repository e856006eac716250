package test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"kiln/test/harness"
)

// TestWarmConcurrent starts four warmers at once on one empty cache, with
// overlapping images (sharing blobs) and different platform sets, as init
// containers of several pods would. All must succeed, the cache must verify,
// and a fifth warm of everything must find it all there: fresh, no bytes.
func TestWarmConcurrent(t *testing.T) {
	t.Parallel()
	reg := harness.NewRegistry(t)
	pushStandard(t, reg.Addr) // base/multi:1 and app/shares:1 share a layer (seed 101)
	shared := harness.LayerSpec{Seed: 101, Size: 512 << 10, Files: 4}
	for i, name := range []string{"conc/one:1", "conc/two:1"} {
		seed := int64(4000 + 100*i)
		pushIndex(t, reg.Ref(name),
			harness.ImageSpec{Platform: "linux/amd64", Layers: append([]harness.LayerSpec{shared}, layers(seed, 3, 1<<20)...)},
			harness.ImageSpec{Platform: "linux/arm64", Layers: append([]harness.LayerSpec{shared}, layers(seed+50, 3, 1<<20)...)})
	}
	multi, shares, one, two := reg.Ref("base/multi:1"), reg.Ref("app/shares:1"), reg.Ref("conc/one:1"), reg.Ref("conc/two:1")
	warmers := []struct {
		images    []string
		platforms string
	}{
		{[]string{multi, shares, one}, "linux/amd64"},
		{[]string{two, multi}, "linux/arm64"},
		{[]string{shares, one, two}, "linux/amd64,linux/arm64"},
		{[]string{two, one, shares, multi}, "linux/arm64,linux/amd64"},
	}
	all := []string{multi, shares, one, two}
	plats := []string{"linux/amd64", "linux/arm64"}

	for round := range 2 { // a second round on a new cache, for another interleaving
		cache := filepath.Join(t.TempDir(), fmt.Sprintf("cache-%d", round))
		cmds := make([]*exec.Cmd, len(warmers))
		outs := make([]*bytes.Buffer, len(warmers))
		reports := make([]string, len(warmers))
		ctx, cancel := context.WithTimeout(t.Context(), defaultTimeout)
		defer cancel()
		for i, w := range warmers {
			reports[i] = filepath.Join(t.TempDir(), "report.json")
			args := []string{"warm", "--cache-dir", cache, "--jobs", "3", "--platform", w.platforms, "--report", reports[i]}
			for _, img := range w.images {
				args = append(args, "--image", img)
			}
			var stdout *bytes.Buffer
			cmds[i], stdout, outs[i] = kilnCmd(t, ctx, runOpts{}, args...)
			cmds[i].Stdout = stdout
		}
		for i, c := range cmds { // all four at once
			if err := c.Start(); err != nil {
				t.Fatalf("starting warmer %d: %v", i, err)
			}
		}
		for i, c := range cmds {
			if err := c.Wait(); err != nil {
				t.Errorf("round %d: warmer %d (%s %s): %v\n%s", round, i, strings.Join(warmers[i].images, " "), warmers[i].platforms, err, outs[i])
			}
		}
		if t.Failed() {
			t.FailNow()
		}
		var downloaded int64
		for i, w := range warmers {
			rep := readReport(t, reports[i])
			wantStatuses(t, rep, statuses(pairs(w.images, splitList(w.platforms)), "pulled|fresh"))
			downloaded += rep.Bytes
		}
		t.Logf("round %d: the four warmers downloaded %d bytes together", round, downloaded)
		verifyCache(t, cache)
		validateCache(t, cache)
		if keys := entryKeys(t, cache); !slices.Equal(keys, sortedCopy(all)) {
			t.Errorf("index.json names %v, want %v", keys, sortedCopy(all))
		}
		for _, ref := range all {
			if ms := entryManifests(t, cache, ref); len(ms) != 2 {
				t.Errorf("%s: cached platforms %v, want both", ref, ms)
			}
		}

		rep := filepath.Join(t.TempDir(), "report.json")
		args := []string{"warm", "--cache-dir", cache, "--platform", "linux/amd64,linux/arm64", "--report", rep}
		for _, img := range all {
			args = append(args, "--image", img)
		}
		mustExit(t, runKiln(t, args...), 0)
		union := readReport(t, rep)
		wantStatuses(t, union, statuses(pairs(all, plats), "fresh"))
		if union.Bytes != 0 {
			t.Errorf("round %d: the union warm downloaded %d bytes, want 0", round, union.Bytes)
		}
	}
}

func splitList(s string) []string { return strings.Split(s, ",") }

// TestWarmConcurrentKills: four warmers on one new cache, two of them
// killed with SIGKILL midway, three times over. The survivors must succeed,
// the cache must verify, and a last warm must complete it.
func TestWarmConcurrentKills(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	reg := harness.NewRegistry(t)
	pushStandard(t, reg.Addr)
	for i, name := range []string{"chaos/one:1", "chaos/two:1"} {
		pushIndex(t, reg.Ref(name),
			harness.ImageSpec{Platform: "linux/amd64", Layers: layers(int64(14000+100*i), 3, 2<<20)},
			harness.ImageSpec{Platform: "linux/arm64", Layers: layers(int64(14050+100*i), 3, 2<<20)})
	}
	slow := harness.NewFaultProxy(t, reg.Addr, harness.Faults{Stall: 1, StallFor: 150 * time.Millisecond, MaxFaultsPerPath: 1 << 30})
	var refs []string
	for _, r := range []string{"base/multi:1", "app/shares:1", "chaos/one:1", "chaos/two:1"} {
		refs = append(refs, slow.Addr+"/"+r)
	}
	all := []string{"warm", "--platform", "linux/amd64,linux/arm64"}
	for _, r := range refs {
		all = append(all, "--image", r)
	}
	for round := range 3 {
		cache := filepath.Join(t.TempDir(), "cache")
		ctx, cancel := context.WithTimeout(t.Context(), defaultTimeout)
		defer cancel()
		cmds := make([]*exec.Cmd, 4)
		errs := make([]*bytes.Buffer, 4)
		for i := range cmds {
			args := []string{"warm", "--cache-dir", cache, "--jobs", "2", "--platform", []string{"linux/amd64", "linux/arm64", "linux/amd64,linux/arm64", "linux/arm64,linux/amd64"}[i]}
			for _, j := range rng.Perm(len(refs)) {
				args = append(args, "--image", refs[j])
			}
			cmds[i], _, errs[i] = kilnCmd(t, ctx, runOpts{}, args...)
		}
		for _, c := range cmds {
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
		}
		victims := rng.Perm(4)[:2]
		delay := time.Duration(30+rng.IntN(300)) * time.Millisecond
		time.Sleep(delay)
		for _, v := range victims {
			_ = cmds[v].Process.Signal(syscall.SIGKILL) // it may have finished already
		}
		var killed []int
		for i, c := range cmds {
			err := c.Wait()
			if slices.Contains(victims, i) && err != nil && strings.Contains(err.Error(), "killed") {
				killed = append(killed, i)
			} else if err != nil {
				t.Errorf("round %d: warmer %d, not killed, failed: %v\n%s", round, i, err, errs[i])
			}
		}
		t.Logf("round %d: SIGKILL after %v killed warmers %v; %d entries, %d blobs, %d temp files",
			round, delay, killed, countEntries(t, cache), countBlobs(t, cache), countTemps(t, cache))
		verifyCache(t, cache)
		mustExit(t, runKiln(t, append(all, "--cache-dir", cache)...), 0)
		verifyCache(t, cache)
		validateCache(t, cache)
	}
}

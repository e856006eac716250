package test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// The layer cache under faults: builds killed with SIGKILL while entries
// are being stored, two builds filling one cache at once, a damaged local
// entry and a cache repository nobody answers on. None may fail a build or
// make a wrong image; the local store must stay valid for kiln warm --verify.

// lcFaultDockerfile has megabyte layers, so that storing an entry takes a
// while, and every kind of cache step. seed.txt varies between builds.
const lcFaultDockerfile = `FROM {base}
COPY seed.txt /seed.txt
RUN cat /bin/busybox /seed.txt > /big1
COPY data/ /data/
RUN cat /big1 /seed.txt /bin/busybox > /big2
WORKDIR /w
RUN cat /seed.txt /data/* > /w/done
`

// lcFaultSteps is how many cache steps lcFaultDockerfile has.
const lcFaultSteps = 6

// lcFaults is what the fault tests share: the suite's registry and base,
// and the digests cacheless builds make of each seed.
type lcFaults struct {
	s    *lcSuite
	refs map[string]string // seed → digest
	took time.Duration     // of a cacheless build
}

// TestLayerCacheFaults runs the fault tests on one registry.
func TestLayerCacheFaults(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("RUN with --isolation chroot needs root")
	}
	f := &lcFaults{s: newLCSuite(t), refs: map[string]string{}}
	for _, seed := range append([]string{"concurrent", "corrupt", "unreachable"}, lcKillSeeds...) {
		start := time.Now()
		f.refs[seed] = f.build(t, f.context(t, seed), []string{"--cache-dir", t.TempDir()}).digest
		f.took = max(f.took, time.Since(start))
	}
	t.Run("kill", f.testKill)
	t.Run("concurrent", f.testConcurrent)
	t.Run("corrupt", f.testCorrupt)
	t.Run("unreachable", f.testUnreachable)
}

// context writes the fault Dockerfile's context for seed.
func (f *lcFaults) context(t *testing.T, seed string) string {
	t.Helper()
	dir := t.TempDir()
	writeContext(t, dir, map[string]string{
		"Dockerfile": strings.ReplaceAll(lcFaultDockerfile, "{base}", f.s.base),
		"seed.txt":   "seed " + seed + "\n",
		"data/a.txt": "a\n", "data/b.txt": "b\n",
	})
	return dir
}

// build runs a build of ctxDir with extra flags to the end (exit 0).
func (f *lcFaults) build(t *testing.T, ctxDir string, extra []string) lcBuiltOut {
	t.Helper()
	return f.buildIn(t, ctxDir, "", extra)
}

// buildIn is build in the work folder work ("": a fresh one).
func (f *lcFaults) buildIn(t *testing.T, ctxDir, work string, extra []string) lcBuiltOut {
	t.Helper()
	out := lcOutput(t)
	res := runKiln(t, append(lcBuildArgs(f.s.reg.Addr, ctxDir, out, work), extra...)...)
	mustExit(t, res, 0)
	return lcBuiltOut{lcBuilt: readBuilt(t, out), res: res}
}

// lcBuiltOut is a build with its output.
type lcBuiltOut struct {
	lcBuilt
	res result
}

// stores are the cache flags of each store, the registry one in repo;
// the local store's folder is the last flag.
func (f *lcFaults) stores(t *testing.T, repo string) map[string][]string {
	dir := t.TempDir()
	return map[string][]string{
		"registry": {"--cache", "--cache-repo", f.s.reg.Addr + "/" + repo, "--cache-dir", filepath.Join(dir, "bases")},
		"local":    {"--cache", "--cache-dir", filepath.Join(dir, "layer-cache")},
	}
}

// testKill kills builds at random moments, both stores, then builds each
// killed build's inputs normally: the image must be right, no entry may be
// torn, and the local store must verify. Each killed build has inputs of
// its own, so it has every entry to store; the delays are spread over the
// time an uncached build takes. LAYERCACHE_SEED replays a run.
func (f *lcFaults) testKill(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("LAYERCACHE_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("LAYERCACHE_SEED=%q: %v", s, err)
		}
	}
	t.Logf("seed %d (LAYERCACHE_SEED=%d replays it)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	for _, name := range []string{"registry", "local"} {
		args := f.stores(t, "lc-faults/kill")[name]
		work := t.TempDir() // shared, so that the last builds remove what the killed ones left
		start := time.Now()
		f.buildIn(t, f.context(t, "calibrate"), work, args)
		took := time.Since(start)
		killed := 0
		for _, s := range lcKillSeeds {
			delay := time.Duration(float64(took) * (0.05 + 0.8*rng.Float64()))
			if f.killAfter(t, name, f.context(t, s), work, args, delay) {
				killed++
			}
		}
		t.Logf("%s: %d of %d builds killed (an uncached build takes %s here)", name, killed, len(lcKillSeeds), took.Round(time.Millisecond))
		if killed == 0 {
			t.Errorf("%s: every build ended before its kill: nothing was tested", name)
		}
		for _, s := range lcKillSeeds {
			b := f.buildIn(t, f.context(t, s), work, args)
			if b.digest != f.refs[s] {
				t.Errorf("%s, seed %s: after the kills a build made %s, a cacheless one %s", name, s, b.digest, f.refs[s])
			}
			if out := b.res.output(); strings.Contains(out, "unusable") || strings.Contains(out, "damaged") {
				t.Errorf("%s, seed %s: a killed build left a torn entry:\n%s", name, s, b.res)
			}
		}
		if name == "local" {
			verifyCache(t, args[len(args)-1])
		}
	}
}

// lcKillSeeds are the inputs of the killed builds, one each.
var lcKillSeeds = []string{"k1", "k2", "k3", "k4"}

// killAfter starts a build and kills it with SIGKILL after delay; it says
// whether the build was still running then.
func (f *lcFaults) killAfter(t *testing.T, store, ctxDir, work string, args []string, delay time.Duration) bool {
	t.Helper()
	out := lcOutput(t)
	bargs := append(lcBuildArgs(f.s.reg.Addr, ctxDir, out, work), args...)
	cmd, _, stderr := kilnCmd(t, t.Context(), runOpts{}, bargs...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		t.Logf("%s: the build ended (%v) before the kill at %s", store, err, delay.Round(time.Millisecond))
		return false
	case <-time.After(delay):
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
	t.Logf("%s: killed at %s, after %d cache misses", store, delay.Round(time.Millisecond), strings.Count(stderr.String(), "layer cache miss"))
	return true
}

// testConcurrent runs two builds filling one cache at once: both must make
// the right image, and a third build must then hit every step.
func (f *lcFaults) testConcurrent(t *testing.T) {
	ctxDir := f.context(t, "concurrent")
	for name, args := range f.stores(t, "lc-faults/concurrent") {
		outs := []string{lcOutput(t), lcOutput(t)}
		errs := make(chan error, len(outs))
		var bufs []fmt.Stringer
		for _, out := range outs {
			cmd, stdout, stderr := kilnCmd(t, t.Context(), runOpts{}, append(lcBuildArgs(f.s.reg.Addr, ctxDir, out, ""), args...)...)
			bufs = append(bufs, stdout, stderr)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			go func() { errs <- cmd.Wait() }()
		}
		for range outs {
			if err := <-errs; err != nil {
				t.Fatalf("%s: a concurrent build failed: %v\n%s", name, err, bufs)
			}
		}
		for i, out := range outs {
			if b := readBuilt(t, out); b.digest != f.refs["concurrent"] {
				t.Errorf("%s: concurrent build %d made %s, a cacheless one %s", name, i, b.digest, f.refs["concurrent"])
			}
		}
		third := f.build(t, ctxDir, args)
		if third.hits() != lcFaultSteps || len(third.steps) != lcFaultSteps {
			t.Errorf("%s: the build after the concurrent ones hit %d of %d steps, want all %d: %v", name, third.hits(), len(third.steps), lcFaultSteps, third.steps)
		}
		if third.digest != f.refs["concurrent"] {
			t.Errorf("%s: the cached build made %s, a cacheless one %s", name, third.digest, f.refs["concurrent"])
		}
		if name == "local" {
			dir := args[len(args)-1]
			keys := localKeys(t, dir)
			seen := map[string]bool{}
			for _, k := range keys {
				if seen[k] {
					t.Errorf("index.json files key %s twice", k)
				}
				seen[k] = true
			}
			verifyCache(t, dir)
		}
	}
}

// testCorrupt damages the layer blob of one local entry (same size, other
// bytes): the next build must warn, miss that step, make the right image
// and replace the entry, so that the build after it hits again.
func (f *lcFaults) testCorrupt(t *testing.T) {
	ctxDir := f.context(t, "corrupt")
	dir := filepath.Join(t.TempDir(), "layer-cache")
	args := []string{"--cache", "--cache-dir", dir}
	first := f.build(t, ctxDir, args)
	victim := first.steps[1] // RUN cat /bin/busybox ... > /big1: a megabyte layer of its own
	if victim.Instruction != "RUN" || victim.Line != 3 {
		t.Fatalf("step 2 is %s, want line 3 RUN", victim)
	}
	damage(t, entryLayer(t, dir, victim.Key))

	second := f.build(t, ctxDir, args)
	if !strings.Contains(second.res.output(), "layer cache entry unusable") || !strings.Contains(second.res.output(), victim.Key) {
		t.Errorf("the build should warn that entry %s is damaged:\n%s", victim.Key, second.res)
	}
	for _, st := range second.steps {
		if st.Hit == (st.Key == victim.Key) {
			t.Errorf("%s: want a miss for the damaged entry only", st)
		}
	}
	if second.digest != first.digest {
		t.Errorf("the build after the damage made %s, before it %s", second.digest, first.digest)
	}

	if b := entryLayer(t, dir, victim.Key); !blobIntact(t, b) {
		t.Errorf("entry %s still points at a damaged blob %s: the rebuilt step was not stored again", victim.Key, b)
	}
	third := f.build(t, ctxDir, args)
	if third.hits() != lcFaultSteps {
		t.Errorf("the build after the repair hit %d of %d steps: %v\n%s", third.hits(), lcFaultSteps, third.steps, third.res)
	}
	if third.digest != first.digest {
		t.Errorf("the build after the repair made %s, the first %s", third.digest, first.digest)
	}
}

// entryLayer finds the local entry of a step (by short key) and returns
// the path of its one layer blob.
func entryLayer(t *testing.T, dir, short string) string {
	t.Helper()
	for _, d := range readIndex(t, dir).Manifests {
		k := d.Annotations["io.kiln.layercache.key"]
		if !strings.HasPrefix(k, short) {
			continue
		}
		f, err := os.Open(blobPath(dir, d.Digest))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		m, err := v1.ParseManifest(f)
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Layers) != 1 {
			t.Fatalf("entry %s has %d layers, want 1", k, len(m.Layers))
		}
		return blobPath(dir, m.Layers[0].Digest)
	}
	t.Fatalf("the store has no entry %s (keys: %v)", short, localKeys(t, dir))
	return ""
}

// damage replaces a blob's bytes with others of the same size (blobs are
// read-only files).
func damage(t *testing.T, blob string) {
	t.Helper()
	data, err := os.ReadFile(blob)
	if err != nil {
		t.Fatal(err)
	}
	for i := range data {
		data[i] ^= 0xff
	}
	if err := os.Chmod(blob, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(blob, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(blob, 0o444); err != nil {
		t.Fatal(err)
	}
}

// blobIntact says whether a blob file's content matches its name.
func blobIntact(t *testing.T, blob string) bool {
	t.Helper()
	f, err := os.Open(blob)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil)) == filepath.Base(blob)
}

// testUnreachable points --cache-repo at a port nobody listens on: the
// build must succeed, warn, miss every step and make the right image.
func (f *lcFaults) testUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	start := time.Now()
	b := f.build(t, f.context(t, "unreachable"), []string{"--cache", "--cache-repo", addr + "/cache",
		"--insecure-registry", addr, "--cache-dir", t.TempDir()})
	took := time.Since(start)
	warnings := 0
	for _, line := range strings.Split(b.res.output(), "\n") {
		if strings.Contains(line, "level=WARN") && strings.Contains(line, addr) {
			warnings++
		}
	}
	if warnings != 1 { // the store is not asked again once it failed
		t.Errorf("%d warnings that the cache at %s cannot be reached, want 1:\n%s", warnings, addr, b.res)
	}
	if b.hits() != 0 {
		t.Errorf("%d hits from an unreachable cache: %v", b.hits(), b.steps)
	}
	if b.digest != f.refs["unreachable"] {
		t.Errorf("the build made %s, a cacheless one %s", b.digest, f.refs["unreachable"])
	}
	if limit := 3*f.took + 10*time.Second; took > limit {
		t.Errorf("the build took %s with an unreachable cache, more than %s", took, limit)
	}
	t.Logf("with an unreachable cache: %s (a cacheless build: %s)", took.Round(time.Millisecond), f.took.Round(time.Millisecond))
}

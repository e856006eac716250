package test

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"kiln/builder/layerstore"
	kilnsnap "kiln/builder/snapshot"
	"kiln/test/harness"
)

// storeBase pushes a three-layer base whose upper layers delete files
// (whiteouts), hide a folder (opaque), change owners and modes and keep
// hardlinks: what the layer store must reproduce exactly through overlay.
func storeBase(t *testing.T, reg *harness.Registry) string {
	t.Helper()
	bb, err := os.ReadFile(needBusybox(t))
	if err != nil {
		t.Fatal(err)
	}
	exe := lfile("bin/busybox", string(bb))
	exe.mode = 0o755
	l1 := handLayer(t, ldir("bin"), exe, ldir("etc"), lfile("etc/a", "a\n"), lfile("etc/b", "b\n"),
		ldir("keep"), lfile("keep/x", "x1\n"), ldir("opq"), lfile("opq/old1", "o1\n"), ldir("opq/sub"), lfile("opq/sub/old2", "o2\n"),
		lfile("h1", "linked\n"), lhardlink("h2", "h1"), ldir("tmp"))
	priv := lowned(lfile("keep/secret", "s\n"), 1000, 1000)
	priv.mode = 0o600
	d := ldir("d")
	d.mode = 0o700
	l2 := handLayer(t, ldir("etc"), lfile("etc/.wh.a", ""), ldir("opq"), lfile("opq/.wh..wh..opq", ""), lfile("opq/new", "n\n"),
		ldir("keep"), priv, d, lfile("d/f", "f\n"))
	l3 := handLayer(t, lfile("keep/x", "x2\n"), lfile(".wh.tmp", ""), lsymlink("etc/link", "/keep/x"))
	ref := reg.Addr + "/store/base:1"
	pushHandImage(t, ref, handImage(t, "linux/amd64", v1.Config{Env: []string{"PATH=/bin"}}, l1, l2, l3))
	return ref
}

// treeDockerfile records the whole tree the RUN sees in its layer.
func treeDockerfile(base string) string {
	return fmt.Sprintf(`FROM %s
RUN ["/bin/busybox", "sh", "-c", "cd / && t=$(/bin/busybox find . -xdev \\( -path ./proc -o -path ./sys -o -path ./dev \\) -prune -o -print | /bin/busybox sort | while read p; do if [ -h \"$p\" ]; then echo \"$p -> $(/bin/busybox readlink \"$p\")\"; elif [ -d \"$p\" ]; then /bin/busybox stat -c '%%n %%a %%u:%%g dir' \"$p\"; elif [ -f \"$p\" ]; then /bin/busybox stat -c '%%n %%a %%u:%%g %%h %%s' \"$p\"; /bin/busybox md5sum \"$p\"; else /bin/busybox stat -c '%%n %%a %%u:%%g %%F' \"$p\"; fi; done); echo \"$t\" > /tree.txt"]
RUN ["/bin/busybox", "sh", "-c", "echo more >> /keep/x && echo linked2 >> /h1 && /bin/busybox rm /etc/b"]
`, base)
}

// storeBuild returns a reproducible build of the context dir (images
// from reg) with a cache folder and flags of the caller's: the image's
// digest and the run.
func storeBuild(t *testing.T, reg *harness.Registry, dir string) func(cache string, extra ...string) (string, result) {
	return func(cache string, extra ...string) (string, result) {
		md := filepath.Join(t.TempDir(), "md.json")
		args := append([]string{"build", "--context", dir, "--reproducible", "--insecure-registry", reg.Addr, "--cache-dir", cache,
			"--work-dir", t.TempDir(), "--output", "oci:" + filepath.Join(t.TempDir(), "out"), "--metadata-file", md, "--progress", "plain"}, extra...)
		r := runKiln(t, args...)
		mustExit(t, r, 0)
		return readBuildMeta(t, md).Digest, r
	}
}

func needStore(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the layer store needs root")
	}
	if ok, why := kilnsnap.Supported(); !ok {
		t.Skipf("the layer store needs overlay mounts: %s", why)
	}
}

// TestLayerStoreSameImage: stages mounted from the layer store give the
// image an unpack gives, byte for byte, the first time (cold store) and
// the second (warm); the RUN sees the base's deletions, opaque folder,
// owners, modes and hardlinks as an unpack has them.
func TestLayerStoreSameImage(t *testing.T) {
	needStore(t)
	reg := harness.NewRegistry(t)
	base := storeBase(t, reg)
	dir := t.TempDir()
	writeContext(t, dir, map[string]string{"Dockerfile": treeDockerfile(base)})
	build := storeBuild(t, reg, dir)
	plain, _ := build(t.TempDir(), "--layer-store=false")
	cache := t.TempDir()
	cold, r1 := build(cache)
	warm, r2 := build(cache)
	// A build on an empty store stores the base whole, in one pass.
	if !strings.Contains(r1.stderr, `msg="mounted the stage's filesystem from the layer store" stage=0 layers=3 unpacked_now=3 whole=true`) ||
		!strings.Contains(r2.stderr, "unpacked_now=0 whole=true") {
		t.Fatalf("the stage was not mounted from the store (cold, then warm):\n%s\n%s", r1.stderr, r2.stderr)
	}
	if cold != plain || warm != plain {
		t.Fatalf("digests: unpacked %s, store cold %s, store warm %s: the store must give the same image", plain, cold, warm)
	}
	stored, err := layerstore.List(cache)
	if err != nil || len(stored) != 1 || !stored[0].Flat {
		t.Fatalf("store holds %v (%v), want the base stored whole", stored, err)
	}
	v := runKiln(t, "warm", "--verify", "--cache-dir", cache)
	if !strings.Contains(v.stdout, "layer store: 0 layers unpacked, 1 base unpacked whole by builds") {
		t.Errorf("warm --verify does not report the store:\n%s", v)
	}

	// kiln warm --unpack stores layer by layer, each applied onto an
	// overlay of those below: the same image again.
	layered := t.TempDir()
	w := runKiln(t, "warm", "--image", base, "--unpack", "--insecure-registry", reg.Addr, "--cache-dir", layered, "--progress", "plain")
	mustExit(t, w, 0)
	if !strings.Contains(w.stdout, "layer store: 3 layers stored now") {
		t.Errorf("warm --unpack should store the 3 layers:\n%s", w)
	}
	byLayer, r3 := build(layered)
	if !strings.Contains(r3.stderr, "layers=3 unpacked_now=0 whole=false") || byLayer != plain {
		t.Fatalf("mounted layer by layer: %s, want %s:\n%s", byLayer, plain, r3.stderr)
	}
	v = runKiln(t, "warm", "--verify", "--cache-dir", layered)
	if !strings.Contains(v.stdout, "layer store: 3 layers unpacked") {
		t.Errorf("warm --verify does not report the store:\n%s", v)
	}
}

// TestLayerStoreConcurrentAndKilled: builds killed while they unpack into
// the store leave nothing a later build trusts; two builds filling an
// empty store at once unpack each layer once and both succeed.
func TestLayerStoreConcurrentAndKilled(t *testing.T) {
	needStore(t)
	reg := harness.NewRegistry(t)
	_, dir := bigStoreBase(t, reg, "big", "x")
	cache := t.TempDir()
	args := func(work string) []string {
		return []string{"build", "--context", dir, "--reproducible", "--insecure-registry", reg.Addr, "--cache-dir", cache,
			"--work-dir", work, "--no-push", "--output", "oci:" + filepath.Join(t.TempDir(), "out"), "--progress", "plain"}
	}
	work := t.TempDir()
	killBuilds(t, 5, 100, 900, func() []string { return args(work) })
	// Two builds at once on what the kills left.
	var wg sync.WaitGroup
	res := make([]result, 2)
	for i := range res {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i] = runKilnOpts(t, runOpts{}, args(work)...)
		}()
	}
	wg.Wait()
	total := 0
	for _, r := range res {
		mustExit(t, r, 0)
		var n int
		for _, l := range strings.Split(r.stderr, "\n") {
			if i := strings.Index(l, "unpacked_now="); i >= 0 {
				fmt.Sscanf(l[i:], "unpacked_now=%d", &n)
				total += n
			}
		}
	}
	if total > 2 {
		t.Errorf("the two builds unpacked %d layers between them: each of the 2 must be unpacked once at most", total)
	}
	temps, _ := filepath.Glob(filepath.Join(layerstore.Dir(cache), ".tmp-*"))
	if len(temps) != 0 {
		t.Errorf("temporary folders left in the store: %v", temps)
	}
	// Nothing of the killed builds stays mounted.
	out, _ := exec.Command("findmnt", "-rn", "-o", "TARGET").Output()
	for _, m := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(m, work) || strings.HasPrefix(m, layerstore.Dir(cache)) {
			t.Errorf("still mounted: %s", m)
		}
	}
	// The result is the image an unpack gives.
	plain := runKiln(t, append(args(t.TempDir()), "--layer-store=false", "--digest-file", filepath.Join(t.TempDir(), "d"))...)
	mustExit(t, plain, 0)
	again := runKiln(t, args(t.TempDir())...)
	mustExit(t, again, 0)
	if d1, d2 := digestLine(plain.stdout), digestLine(again.stdout); d1 == "" || d1 != d2 {
		t.Errorf("after kills: %q with the store, %q unpacked", d2, d1)
	}
}

// digestLine is the digest in kiln build's summary line.
func digestLine(out string) string {
	for _, f := range strings.Fields(out) {
		if strings.HasPrefix(f, "sha256:") {
			return f
		}
	}
	return ""
}

// TestLayerStoreTars: where a stage is unpacked rather than mounted (here
// walk snapshots; in a pod, container isolation), the store keeps each base
// layer's uncompressed tar as the first build reads it and the next builds
// unpack from it, to the same image. A damaged tar is found at its end,
// removed, and the stage unpacked again from the registry; warm --verify
// reports the tars and warm --prune keeps those of cached images.
func TestLayerStoreTars(t *testing.T) {
	needStore(t)
	reg := harness.NewRegistry(t)
	base := storeBase(t, reg)
	dir := t.TempDir()
	writeContext(t, dir, map[string]string{"Dockerfile": treeDockerfile(base)})
	build := storeBuild(t, reg, dir)
	plain, _ := build(t.TempDir(), "--layer-store=false", "--snapshot", "walk")
	cache := t.TempDir()
	first, r1 := build(cache, "--snapshot", "walk")
	if !strings.Contains(r1.stderr, `msg="layer store: uncompressed tars" stage=0 read=0 kept=3`) {
		t.Fatalf("the first build should keep the base's 3 tars:\n%s", r1.stderr)
	}
	tars, err := layerstore.ListTars(cache)
	if err != nil || len(tars) != 3 {
		t.Fatalf("store holds tars %v (%v), want the base's 3", tars, err)
	}
	second, r2 := build(cache, "--snapshot", "walk")
	if !strings.Contains(r2.stderr, `read=3 kept=0`) {
		t.Fatalf("the second build should unpack from the 3 stored tars:\n%s", r2.stderr)
	}
	if first != plain || second != plain {
		t.Fatalf("digests: unpacked %s, tars kept %s, tars read %s: the store must give the same image", plain, first, second)
	}

	// Damage one stored tar (its blobs are read-only, as blobs are).
	victim := tars[1].Path
	data, err := os.ReadFile(victim)
	if err != nil {
		t.Fatal(err)
	}
	data[600] ^= 0xff // inside the first entry's content
	if err := os.Chmod(victim, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(victim, data, 0o444); err != nil {
		t.Fatal(err)
	}
	third, r3 := build(cache, "--snapshot", "walk")
	if !strings.Contains(r3.stderr, "a stored tar was damaged; unpacking the stage again") || third != plain {
		t.Fatalf("a damaged tar must be found, dropped and the stage unpacked again to the same image (%s, want %s):\n%s", third, plain, r3.stderr)
	}
	if tars2, _ := layerstore.ListTars(cache); len(tars2) != 3 {
		t.Errorf("after the damaged tar: %d tars stored, want 3 (it is kept again, whole)", len(tars2))
	}

	v := runKiln(t, "warm", "--verify", "--cache-dir", cache)
	if !strings.Contains(v.stdout, "layer store: 3 layers kept as uncompressed tars") {
		t.Errorf("warm --verify does not report the tars:\n%s", v)
	}
	// Once the base is warmed, prune keeps its tars; once no configured
	// image uses it, prune drops them.
	p := runKiln(t, "warm", "--prune", "--cache-dir", cache, "--image", base, "--insecure-registry", reg.Addr, "--progress", "plain")
	mustExit(t, p, 0)
	if tars3, _ := layerstore.ListTars(cache); len(tars3) != 3 {
		t.Errorf("warm --prune of the cache that holds the base left %d tars, want 3:\n%s", len(tars3), p)
	}
	other := base[:strings.LastIndex(base, ":")] + "-other:1"
	pushHandImage(t, other, handImage(t, "linux/amd64", v1.Config{}, handLayer(t, lfile("only", "o\n"))))
	p = runKiln(t, "warm", "--prune", "--cache-dir", cache, "--image", other, "--insecure-registry", reg.Addr, "--progress", "plain")
	mustExit(t, p, 0)
	if tars4, _ := layerstore.ListTars(cache); len(tars4) != 0 || !strings.Contains(p.stdout, "layer store: dropped 3 stored layers") {
		t.Errorf("warm --prune without the base left %d of its tars:\n%s", len(tars4), p)
	}
}

// TestLayerStoreTarsKilled: builds killed while they keep a layer's tar
// leave no tar a later build would trust (every stored tar hashes to its
// name), the next build gives the image an unpack gives, and warm --prune
// removes the killed builds' temporary files.
func TestLayerStoreTarsKilled(t *testing.T) {
	needStore(t)
	reg := harness.NewRegistry(t)
	ref, dir := bigStoreBase(t, reg, "bigtars", "y")
	cache := t.TempDir()
	args := func(extra ...string) []string {
		return append([]string{"build", "--context", dir, "--reproducible", "--insecure-registry", reg.Addr, "--cache-dir", cache,
			"--work-dir", t.TempDir(), "--no-push", "--output", "oci:" + filepath.Join(t.TempDir(), "out"), "--progress", "plain", "--snapshot", "walk"}, extra...)
	}
	killBuilds(t, 4, 50, 600, func() []string { return args() })
	checkTars := func() int {
		tars, err := layerstore.ListTars(cache)
		if err != nil {
			t.Fatal(err)
		}
		for _, tr := range tars {
			if !blobIntact(t, tr.Path) {
				t.Errorf("stored tar %s does not hash to its name: a killed build left a tar a build would trust", tr.Path)
			}
		}
		return len(tars)
	}
	checkTars()
	plain := runKiln(t, args("--layer-store=false")...)
	mustExit(t, plain, 0)
	again := runKiln(t, args()...)
	mustExit(t, again, 0)
	if d1, d2 := digestLine(plain.stdout), digestLine(again.stdout); d1 == "" || d1 != d2 {
		t.Errorf("after kills: %q from the store, %q unpacked", d2, d1)
	}
	if n := checkTars(); n != 2 {
		t.Errorf("%d tars stored after a whole build, want 2", n)
	}
	p := runKiln(t, "warm", "--prune", "--image", ref, "--insecure-registry", reg.Addr, "--cache-dir", cache, "--progress", "plain")
	mustExit(t, p, 0)
	left, _ := filepath.Glob(filepath.Join(layerstore.TarsDir(cache), "blobs", "sha256", ".*"))
	if len(left) != 0 {
		t.Errorf("warm --prune left temporary files: %v", left)
	}
	if n := checkTars(); n != 2 {
		t.Errorf("%d tars after warm --prune of the cache holding the base, want 2", n)
	}
}

// bigStoreBase pushes a two-layer base with a large first layer (busybox
// and 3,000 files of 2 KiB of fill), so that kills land inside an unpack,
// and returns it and a context whose Dockerfile runs a step on it.
func bigStoreBase(t *testing.T, reg *harness.Registry, name, fill string) (ref, dir string) {
	t.Helper()
	big := make([]lentry, 0, 3002)
	bb, err := os.ReadFile(needBusybox(t))
	if err != nil {
		t.Fatal(err)
	}
	exe := lfile("bin/busybox", string(bb))
	exe.mode = 0o755
	big = append(big, ldir("bin"), exe, ldir("many"))
	for i := range 3000 {
		big = append(big, lfile(fmt.Sprintf("many/f%04d", i), strings.Repeat(fill, 2048)))
	}
	ref = reg.Addr + "/store/" + name + ":1"
	pushHandImage(t, ref, handImage(t, "linux/amd64", v1.Config{Env: []string{"PATH=/bin"}}, handLayer(t, big...), handLayer(t, lfile("top", "t\n"))))
	dir = t.TempDir()
	writeContext(t, dir, map[string]string{"Dockerfile": fmt.Sprintf("FROM %s\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox ls /many | /bin/busybox wc -l > /count\"]\n", ref)})
	return ref, dir
}

// killBuilds starts n builds with args() one after the other and kills
// each (SIGKILL) after a seeded random delay of minMS to minMS+spanMS
// milliseconds; the seed is logged.
func killBuilds(t *testing.T, n, minMS, spanMS int, args func() []string) {
	t.Helper()
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewSource(seed))
	for i := range n {
		ctx, cancel := context.WithCancel(t.Context())
		cmd, _, _ := kilnCmd(t, ctx, runOpts{}, args()...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(minMS+rng.Intn(spanMS)) * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		cancel()
		t.Logf("kill %d done", i)
	}
}

// TestLayerStoreWarmTarsUnprivileged: kiln warm --unpack by a user who may
// not mount overlays keeps each warmed layer's uncompressed tar instead;
// a second run stores nothing new.
func TestLayerStoreWarmTarsUnprivileged(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run kiln as another user")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("setpriv (util-linux) not installed")
	}
	reg := harness.NewRegistry(t)
	base := storeBase(t, reg)
	dir := t.TempDir() // t.TempDir's parents are 0700: open the way for nobody
	for p := dir; p != os.TempDir() && p != "/"; p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "kiln")
	data, err := os.ReadFile(kilnBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(dir, "cache")
	if err := os.Mkdir(cache, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(cache, 0o777); err != nil {
		t.Fatal(err)
	}
	warm := func() string {
		cmd := exec.CommandContext(t.Context(), "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", bin,
			"warm", "--image", base, "--unpack", "--insecure-registry", reg.Addr, "--cache-dir", cache, "--progress", "plain")
		cmd.Dir = dir
		cmd.Env = []string{"HOME=" + dir, "PATH=/usr/bin:/bin"}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kiln warm --unpack as nobody: %v\n%s", err, out)
		}
		return string(out)
	}
	out := warm()
	if !strings.Contains(out, "keeping each layer's uncompressed tar instead") || !strings.Contains(out, "layer store: 3 layers stored now") {
		t.Fatalf("warm --unpack as nobody should keep the 3 layers' tars:\n%s", out)
	}
	tars, err := layerstore.ListTars(cache)
	if err != nil || len(tars) != 3 {
		t.Fatalf("tars %v (%v), want 3", tars, err)
	}
	for _, tr := range tars {
		if !blobIntact(t, tr.Path) {
			t.Errorf("stored tar %s does not hash to its name", tr.Path)
		}
	}
	if out := warm(); !strings.Contains(out, "layer store: 0 layers stored now, 3 layers of 3 warmed layers already were") {
		t.Errorf("a second warm --unpack should store nothing:\n%s", out)
	}
}

// TestLayerStoreOwnLayers: a stage whose first RUN comes after a COPY mounts
// its base from the store and applies the COPY's layer onto the mount: a
// changed COPY does not unpack the base again, the store holds the base
// alone (never a build's own files), and the image is an unpack's.
func TestLayerStoreOwnLayers(t *testing.T) {
	needStore(t)
	reg := harness.NewRegistry(t)
	base := storeBase(t, reg)
	dir := t.TempDir()
	cache := t.TempDir()
	buildContext := storeBuild(t, reg, dir)
	build := func(content string, extra ...string) (string, result) {
		writeContext(t, dir, map[string]string{"app.txt": content, "Dockerfile": "FROM " + base + "\nCOPY app.txt /keep/app.txt\n" +
			"RUN [\"/bin/busybox\", \"sh\", \"-c\", \"cat /keep/app.txt /keep/x /keep/secret > /seen && echo more >> /keep/app.txt\"]\n"})
		return buildContext(cache, extra...)
	}
	for i, content := range []string{"one\n", "two\n"} {
		got, r := build(content)
		want, _ := build(content, "--layer-store=false")
		unpacked := []string{"unpacked_now=3", "unpacked_now=0"}[i]
		if !strings.Contains(r.stderr, `msg="mounted the stage's filesystem from the layer store" stage=0 layers=3 `+unpacked) ||
			!strings.Contains(r.stderr, `msg="applied the stage's own layers onto it" stage=0 layers=1`) {
			t.Fatalf("build %d: the base should be mounted from the store (%s) and the COPY applied onto it:\n%s", i+1, unpacked, r.stderr)
		}
		if got != want {
			t.Fatalf("build %d: %s with the store, %s unpacked: want the same image", i+1, got, want)
		}
	}
	stored, err := layerstore.List(cache)
	if err != nil || len(stored) != 1 || !stored[0].Flat {
		t.Fatalf("store holds %v (%v), want the base alone, stored whole", stored, err)
	}
}

// TestLayerStoreStackedSteps: on a stage mounted from the layer store,
// each RUN's change is stacked on the stage (its upper folder becomes the
// top lower of the stage's overlay) and its layer written behind the
// build. Later steps see every earlier step's files, deletions, replaced
// and removed folders, renames, a COPY between RUNs and a write to a
// hardlinked base file (applied, not stacked) as the unpacked stage has
// them; other stages read the stacked stage (FROM it, COPY --from): the
// image is the unpacked build's byte for byte.
func TestLayerStoreStackedSteps(t *testing.T) {
	needStore(t)
	reg := harness.NewRegistry(t)
	base := storeBase(t, reg)
	dir := t.TempDir()
	sh := func(script string) string {
		return fmt.Sprintf("RUN [\"/bin/busybox\", \"sh\", \"-c\", %q]\n", script)
	}
	tree := treeDockerfile(base)
	treeRun := strings.SplitN(tree, "\n", 3)[1] + "\n" // the RUN recording the tree in /tree.txt
	df := "FROM " + base + " AS one\n" +
		sh("mkdir -p /s/d/e /s/r && echo a > /s/a && echo b > /s/d/b && echo f > /s/d/e/f && echo r > /s/r/x && /bin/busybox ln /s/a /s/a2 && /bin/busybox ln -s a /s/l && rm /etc/b && echo gone > /s/gone") +
		"COPY app.txt /s/app.txt\n" +
		sh("rm /s/gone && echo c >> /s/d/b && rm -rf /s/d/e && mkdir /s/d/e && echo g > /s/d/e/g && chmod 700 /s/d && rm -rf /opq/sub") +
		sh("true") +
		sh("rm -rf /s/d && mv /s/app.txt /s/app2.txt && mv /s/r /s/r2 && cat /s/a2 /s/app2.txt > /s/seen") +
		sh("echo linked3 >> /h2 && mkdir /s/d && echo again > /s/d/b") +
		sh("echo y >> /s/a2 && rm /s/l && /bin/busybox ln -s r2 /s/l") +
		treeRun +
		"FROM one AS two\n" +
		sh("echo two >> /s/a && rm -rf /s/r2") +
		treeRun +
		"FROM " + base + "\n" +
		"COPY --from=one /s /from-one\n" +
		"COPY --from=two /s /from-two\n" +
		"COPY --from=two /tree.txt /tree-two.txt\n" +
		treeRun
	writeContext(t, dir, map[string]string{"Dockerfile": df, "app.txt": "app\n"})
	build := storeBuild(t, reg, dir)
	plain, _ := build(t.TempDir(), "--layer-store=false")
	cache := t.TempDir()
	for i := 1; i <= 2; i++ {
		got, r := build(cache)
		if n := strings.Count(r.stderr, "layer_behind=true"); n != 5 {
			t.Errorf("build %d: %d RUN layers written behind, want 5 (all on stages mounted from the store but the empty step and the writes to hardlinked files):\n%s", i, n, r.stderr)
		}
		if got != plain {
			t.Fatalf("build %d: %s with stacked steps, %s unpacked: want the same image\n%s", i, got, plain, r.stderr)
		}
		// The e2e binary is built as the Makefile builds it (main_test.go).
		if !strings.Contains(r.stderr, `init="the embedded init"`) {
			t.Errorf("build %d: the steps' init should be the one embedded in kiln:\n%s", i, r.stderr)
		}
	}
}

// TestLayerStoreTallStack: a stage with more RUN steps than one overlay
// mount can stack (its options carry one page of folder names) stacks what
// fits, then applies each further step to the stage: the image is the
// unpacked build's.
func TestLayerStoreTallStack(t *testing.T) {
	needStore(t)
	reg := harness.NewRegistry(t)
	base := storeBase(t, reg)
	dir := t.TempDir()
	df := "FROM " + base + "\n"
	const steps = 80
	for i := range steps {
		df += fmt.Sprintf("RUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo %d >> /keep/log && echo %d > /keep/f%d && rm -f /keep/f%d\"]\n", i, i, i, i-1)
	}
	df += strings.SplitN(treeDockerfile(base), "\n", 3)[1] + "\n"
	writeContext(t, dir, map[string]string{"Dockerfile": df})
	build := storeBuild(t, reg, dir)
	plain, _ := build(t.TempDir(), "--layer-store=false")
	got, r := build(t.TempDir())
	behind, applied := strings.Count(r.stderr, "layer_behind=true"), strings.Count(r.stderr, "layer_behind=false")
	t.Logf("%d steps stacked, %d applied", behind, applied)
	if behind < 10 || applied < 1 || behind+applied != steps+1 {
		t.Errorf("%d steps stacked and %d applied, want some of each (%d in all)", behind, applied, steps+1)
	}
	if got != plain {
		t.Fatalf("%s with a stack taller than one mount, %s unpacked: want the same image\n%s", got, plain, r.stderr)
	}
}

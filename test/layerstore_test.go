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
	build := func(cache string, extra ...string) (string, result) {
		md := filepath.Join(t.TempDir(), "md.json")
		args := append([]string{"build", "--context", dir, "--reproducible", "--insecure-registry", reg.Addr, "--cache-dir", cache,
			"--work-dir", t.TempDir(), "--output", "oci:" + filepath.Join(t.TempDir(), "out"), "--metadata-file", md, "--progress", "plain"}, extra...)
		r := runKiln(t, args...)
		mustExit(t, r, 0)
		return readBuildMeta(t, md).Digest, r
	}
	plain, _ := build(t.TempDir(), "--layer-store=false")
	cache := t.TempDir()
	cold, r1 := build(cache)
	warm, r2 := build(cache)
	if !strings.Contains(r1.stderr, `msg="mounted the stage's filesystem from the layer store" stage=0 layers=3 unpacked_now=3`) ||
		!strings.Contains(r2.stderr, "unpacked_now=0") {
		t.Fatalf("the stage was not mounted from the store (cold, then warm):\n%s\n%s", r1.stderr, r2.stderr)
	}
	if cold != plain || warm != plain {
		t.Fatalf("digests: unpacked %s, store cold %s, store warm %s: the store must give the same image", plain, cold, warm)
	}
	stored, err := layerstore.List(cache)
	if err != nil || len(stored) != 3 {
		t.Fatalf("store holds %v (%v), want the base's 3 layers", stored, err)
	}
	v := runKiln(t, "warm", "--verify", "--cache-dir", cache)
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
	// A base with a large first layer, so kills land inside an unpack.
	big := make([]lentry, 0, 3002)
	bb, err := os.ReadFile(needBusybox(t))
	if err != nil {
		t.Fatal(err)
	}
	exe := lfile("bin/busybox", string(bb))
	exe.mode = 0o755
	big = append(big, ldir("bin"), exe, ldir("many"))
	for i := range 3000 {
		big = append(big, lfile(fmt.Sprintf("many/f%04d", i), strings.Repeat("x", 2048)))
	}
	ref := reg.Addr + "/store/big:1"
	pushHandImage(t, ref, handImage(t, "linux/amd64", v1.Config{Env: []string{"PATH=/bin"}}, handLayer(t, big...), handLayer(t, lfile("top", "t\n"))))
	dir := t.TempDir()
	writeContext(t, dir, map[string]string{"Dockerfile": fmt.Sprintf("FROM %s\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox ls /many | /bin/busybox wc -l > /count\"]\n", ref)})
	cache := t.TempDir()
	args := func(work string) []string {
		return []string{"build", "--context", dir, "--reproducible", "--insecure-registry", reg.Addr, "--cache-dir", cache,
			"--work-dir", work, "--no-push", "--output", "oci:" + filepath.Join(t.TempDir(), "out"), "--progress", "plain"}
	}
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewSource(seed))
	work := t.TempDir()
	for i := range 5 {
		ctx, cancel := context.WithCancel(t.Context())
		cmd, _, _ := kilnCmd(t, ctx, runOpts{}, args(work)...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(100+rng.Intn(900)) * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		cancel()
		t.Logf("kill %d done", i)
	}
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

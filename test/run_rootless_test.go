package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"kiln/builder/layerstore"
	"kiln/test/harness"
)

// TestRunRootless: as a user other than root, kiln picks rootless
// isolation by itself, runs the steps in a user namespace and records what
// they made as the namespace sees it (root's), not as the host's ids. With
// a subordinate id range (an /etc/subuid and /etc/subgid of the test's own,
// bound over the host's in a private mount namespace), a step may also give
// files to other users, and the image records those users. Either way the
// steps run under the default seccomp filter, with every mount nodev.
func TestRunRootless(t *testing.T) {
	t.Parallel()
	needBusybox(t)
	if os.Geteuid() != 0 {
		t.Skip("switching to another user needs root")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("setpriv (util-linux) not installed")
	}
	t.Run("single id", func(t *testing.T) { t.Parallel(); rootlessBuild(t, false) })
	t.Run("subordinate range", func(t *testing.T) { t.Parallel(); rootlessBuild(t, true) })
}

func rootlessBuild(t *testing.T, subRange bool) {
	busybox := needBusybox(t)
	u := newRootlessUser(t, subRange)
	ctxDir, work := u.mkdir("ctx"), u.mkdir("work")
	copyFile(t, busybox, filepath.Join(ctxDir, "busybox"), 0o755)
	writeContext(t, ctxDir, map[string]string{"Dockerfile": `FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN mkdir -p /srv/data && echo made > /srv/data/file && id -u > /srv/uid
RUN grep -E '^Seccomp:[[:space:]]+2$' /proc/self/status && ! awk '$4 != "/null" && $5 !~ "^/dev/(null|zero|full|random|urandom|tty|pts)$" && $6 !~ /nodev/' /proc/self/mountinfo | grep .
`})
	owned := map[string][2]int{}
	if subRange {
		writeContext(t, ctxDir, map[string]string{"Dockerfile": `FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN mkdir -p /srv/data && echo made > /srv/data/file && id -u > /srv/uid
RUN mkdir -p /home/app && chown 1000:1000 /home/app && touch /home/app/f && chown 7:50 /home/app/f
RUN grep -E '^Seccomp:[[:space:]]+2$' /proc/self/status && ! awk '$4 != "/null" && $5 !~ "^/dev/(null|zero|full|random|urandom|tty|pts)$" && $6 !~ /nodev/' /proc/self/mountinfo | grep .
`})
		owned = map[string][2]int{"/home/app": {1000, 1000}, "/home/app/f": {7, 50}}
	}
	out := filepath.Join(work, "out")
	r := u.run("build", "--progress", "plain", "--context", ctxDir, "--output", "oci:"+out,
		"--cache-dir", filepath.Join(work, "cache"), "--work-dir", work, "--reproducible")
	mustExit(t, r, 0)
	if !strings.Contains(r.stderr, "isolation=rootless") {
		t.Errorf("kiln should pick rootless isolation as uid 65534:\n%s", r)
	}
	if single := strings.Contains(r.stderr, "single-id user namespace"); single == subRange {
		t.Errorf("warned of a single-id map: %v, want %v:\n%s", single, !subRange, r)
	}
	tree, _ := flatten(t, layoutImage(t, out, "image"))
	files := byPath(tree)
	for _, p := range []string{"/srv", "/srv/data", "/srv/data/file", "/srv/uid", "/bin/sh"} {
		e, ok := files[p]
		if !ok {
			t.Errorf("%s missing from the image", p)
			continue
		}
		if e.UID != 0 || e.GID != 0 {
			t.Errorf("%s is owned by %d:%d in the image; a rootless step's files are root's inside the namespace", p, e.UID, e.GID)
		}
	}
	for p, ids := range owned {
		if e, ok := files[p]; !ok || e.UID != ids[0] || e.GID != ids[1] {
			t.Errorf("%s in the image: %v, want owner %d:%d", p, e, ids[0], ids[1])
		}
	}
}

// rootlessUser runs kiln as uid 65534 from a copy of the binary in a
// folder nobody can reach (dir, opened up to it), with a subordinate id
// range of its own (300000-365535, in /etc/subuid and /etc/subgid bound
// over the host's in a private mount namespace) when subRange is set.
type rootlessUser struct {
	t        *testing.T
	dir, bin string
	subRange bool
	sub      string
}

func newRootlessUser(t *testing.T, subRange bool) *rootlessUser {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("switching to another user needs root")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("setpriv (util-linux) not installed")
	}
	u := &rootlessUser{t: t, dir: t.TempDir(), subRange: subRange}
	for p := u.dir; p != os.TempDir() && p != "/"; p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	u.bin = filepath.Join(u.dir, "kiln")
	copyFile(t, kilnBin, u.bin, 0o755)
	if subRange {
		for _, p := range []string{"/etc/subuid", "/etc/subgid"} {
			if _, err := os.Stat(p); err != nil {
				t.Skipf("%s missing (nothing to bind the test's range over): %v", p, err)
			}
		}
		if _, err := exec.LookPath("newuidmap"); err != nil {
			t.Skip("newuidmap not installed (Debian: uidmap)")
		}
		if _, err := exec.LookPath("unshare"); err != nil {
			t.Skip("unshare (util-linux) not installed")
		}
		u.sub = filepath.Join(u.dir, "subid")
		if err := os.WriteFile(u.sub, []byte("nobody:300000:65536\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return u
}

// mkdir makes a folder of dir that the user may write.
func (u *rootlessUser) mkdir(name string) string {
	p := filepath.Join(u.dir, name)
	if err := os.MkdirAll(p, 0o777); err != nil {
		u.t.Fatal(err)
	}
	if err := os.Chmod(p, 0o777); err != nil {
		u.t.Fatal(err)
	}
	return p
}

// command is kiln with args as the user; every program on the way execs
// the next, so its process is kiln's.
func (u *rootlessUser) command(args ...string) *exec.Cmd {
	argv := append([]string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", u.bin}, args...)
	if u.subRange {
		script := `mount --bind "$1" /etc/subuid && mount --bind "$1" /etc/subgid && shift && exec "$@"`
		argv = append([]string{"unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script, "sh", u.sub}, argv...)
	}
	cmd := exec.CommandContext(u.t.Context(), argv[0], argv[1:]...)
	cmd.Dir = u.dir
	cmd.Env = append(baseEnv(), "HOME="+u.dir, "TMPDIR="+u.mkdir("tmp"), "DOCKER_CONFIG="+u.dir)
	return cmd
}

func (u *rootlessUser) run(args ...string) result {
	u.t.Helper()
	cmd := u.command(args...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String(), code: exitCode(err)}
	if r.code != 0 && (strings.Contains(r.stderr, "namespaces are not permitted") || strings.Contains(r.stderr, "may not create namespaces")) {
		u.t.Skipf("user namespaces are not permitted here:\n%s", r)
	}
	return r
}

// TestRunRootlessLayerStore: a rootless build with a subordinate id range
// runs whole in a user namespace of kiln's own, where the base is stored
// unpacked with its real owners and each stage is an overlay mount of it,
// as a root build's is: the RUN sees the base's deletions, opaque folder,
// owners (1000:1000 among them), modes and hardlinks exactly as root's
// unpack has them, so the image is root's byte for byte; cold, warm, and
// stored layer by layer by kiln warm --unpack (overlay's user.overlay.*
// marks). The store is that namespace's own, beside root's. A base with an
// owner the range does not map is unpacked instead, never stored wrong.
func TestRunRootlessLayerStore(t *testing.T) {
	needStore(t)
	u := newRootlessUser(t, true)
	reg := harness.NewRegistry(t)
	base := storeBase(t, reg)
	ctxDir := u.mkdir("ctx")
	// --network=none: the host's /etc/hosts and resolv.conf, bound into a
	// step that shares the host's network, belong to an id the namespace
	// does not map (nobody there), where a root build's step sees root.
	// A write to a hardlinked base file is left out (see the end).
	df := strings.Replace(treeDockerfile(base), "RUN [", "RUN --network=none [", 1)
	df = strings.Replace(df, " && echo linked2 >> /h1", "", 1)
	writeContext(t, ctxDir, map[string]string{"Dockerfile": df})
	digest := func(r result) string {
		t.Helper()
		d := digestLine(r.stdout)
		if d == "" {
			t.Fatalf("no digest in the output:\n%s", r)
		}
		return d
	}
	rootOut := filepath.Join(t.TempDir(), "out")
	plain := runKiln(t, "build", "--context", ctxDir, "--reproducible", "--insecure-registry", reg.Addr, "--layer-store=false",
		"--cache-dir", t.TempDir(), "--work-dir", t.TempDir(), "--output", "oci:"+rootOut, "--progress", "plain")
	mustExit(t, plain, 0)
	work := u.mkdir("work")
	build := func(cache string) result {
		t.Helper()
		r := u.run("build", "--context", ctxDir, "--reproducible", "--insecure-registry", reg.Addr, "--cache-dir", cache,
			"--work-dir", work, "--output", "oci:"+filepath.Join(work, "out"), "--progress", "plain")
		mustExit(t, r, 0)
		if !strings.Contains(r.stderr, "isolation=rootless") || !strings.Contains(r.stderr, "kiln runs in a user namespace of its own") {
			t.Errorf("the build should run in kiln's own user namespace, its steps rootless:\n%s", r)
		}
		return r
	}
	cache := u.mkdir("cache")
	cold, warm := build(cache), build(cache)
	if !strings.Contains(cold.stderr, `msg="mounted the stage's filesystem from the layer store" stage=0 layers=3 unpacked_now=3 whole=true`) ||
		!strings.Contains(warm.stderr, "layers=3 unpacked_now=0 whole=true") {
		t.Fatalf("the stage was not mounted from the store (cold, then warm):\n%s\n%s", cold.stderr, warm.stderr)
	}
	if d0, d1, d2 := digest(plain), digest(cold), digest(warm); d1 != d0 || d2 != d0 {
		want, _ := flatten(t, layoutImage(t, rootOut, "image"))
		got, _ := flatten(t, layoutImage(t, filepath.Join(work, "out"), "image"))
		t.Fatalf("digests: root unpack %s, rootless store cold %s, warm %s: want the same image; root's (-) and the rootless one (+):\n%s",
			d0, d1, d2, strings.Join(diffTrees(want, got), "\n"))
	}
	if root, err := layerstore.List(cache); err != nil || len(root) != 0 {
		t.Errorf("root's store holds %v (%v): the rootless build's layers belong to its namespace's store", root, err)
	}
	if ns, _ := filepath.Glob(filepath.Join(layerstore.Dir(cache), "userns-*", "flat-*")); len(ns) != 1 {
		t.Errorf("the namespace's store holds %v, want the base stored whole", ns)
	}
	v := u.run("warm", "--verify", "--cache-dir", cache)
	if !strings.Contains(v.stdout, "1 base unpacked whole by builds") {
		t.Errorf("warm --verify as the user should report its namespace's store:\n%s", v)
	}

	// Stored layer by layer by kiln warm --unpack: each layer applied onto
	// an overlay of those below, in the namespace.
	layered := u.mkdir("layered")
	w := u.run("warm", "--image", base, "--unpack", "--insecure-registry", reg.Addr, "--cache-dir", layered, "--progress", "plain")
	mustExit(t, w, 0)
	if !strings.Contains(w.stdout, "layer store: 3 layers stored now") {
		t.Fatalf("warm --unpack should store the 3 layers:\n%s", w)
	}
	r := build(layered)
	if !strings.Contains(r.stderr, "layers=3 unpacked_now=0 whole=false") || digest(r) != digest(plain) {
		t.Fatalf("mounted layer by layer: %s, want %s:\n%s", digest(r), digest(plain), r.stderr)
	}

	// In a user namespace overlay has no index (the kernel decodes file
	// handles only for CAP_DAC_READ_SEARCH of the host), so a step that
	// writes a hardlinked base file in place splits its names, as rootless
	// podman's and buildah's overlays do: kiln says so.
	writeContext(t, ctxDir, map[string]string{"Dockerfile": "FROM " + base + "\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo linked2 >> /h1\"]\n"})
	r = build(cache)
	if !strings.Contains(r.stderr, "the step wrote 1 files that have other names (hardlinks) in the layers below, /h1 among them") {
		t.Errorf("a rootless step that writes a hardlinked file should be warned of:\n%s", r)
	}

	// An owner past the range: unpacked (owner lost, as rootless unpacks
	// have it), not stored.
	far := lowned(lfile("far", "f\n"), 100000, 100000)
	farBase := reg.Addr + "/store/far:1"
	bb, err := os.ReadFile(needBusybox(t))
	if err != nil {
		t.Fatal(err)
	}
	exe := lfile("bin/busybox", string(bb))
	exe.mode = 0o755
	pushHandImage(t, farBase, handImage(t, "linux/amd64", v1.Config{Env: []string{"PATH=/bin"}}, handLayer(t, ldir("bin"), exe, far)))
	writeContext(t, ctxDir, map[string]string{"Dockerfile": "FROM " + farBase + "\nRUN [\"/bin/busybox\", \"touch\", \"/new\"]\n"})
	r = build(u.mkdir("farcache"))
	if !strings.Contains(r.stderr, "stage filesystem not mounted from the layer store; unpacking it") || !strings.Contains(r.stderr, "100000:100000") {
		t.Errorf("a base with an unmapped owner should be unpacked, not stored:\n%s", r)
	}

	// warm --prune by the user prunes its namespace's store, whose files
	// belong to its subordinate ids: kept while cached, dropped after.
	p := u.run("warm", "--image", base, "--prune", "--insecure-registry", reg.Addr, "--cache-dir", cache, "--progress", "plain")
	mustExit(t, p, 0)
	p = u.run("warm", "--image", farBase, "--prune", "--prune-grace", "0s", "--insecure-registry", reg.Addr, "--cache-dir", cache, "--progress", "plain")
	mustExit(t, p, 0)
	if !strings.Contains(p.stdout, "layer store: dropped 1 stored layer") {
		t.Errorf("warm --prune as the user should drop its namespace's stored base:\n%s", p)
	}
	if left, _ := filepath.Glob(filepath.Join(layerstore.Dir(cache), "userns-*", "flat-*")); len(left) != 0 {
		t.Errorf("left in the namespace's store: %v", left)
	}
	// Root's warm --prune (a nightly job) prunes the namespaces' stores too.
	writeContext(t, ctxDir, map[string]string{"Dockerfile": df})
	build(cache)
	p = runKiln(t, "warm", "--image", farBase, "--prune", "--prune-grace", "0s", "--insecure-registry", reg.Addr, "--cache-dir", cache, "--progress", "plain")
	mustExit(t, p, 0)
	if left, _ := filepath.Glob(filepath.Join(layerstore.Dir(cache), "userns-*", "flat-*")); len(left) != 0 || !strings.Contains(p.stdout, "layer store: dropped 1 stored layer") {
		t.Errorf("root's warm --prune should drop the namespace's stored base (left: %v):\n%s", left, p)
	}
}

// TestRunRootlessSignals: the kiln a user started waits for the one it ran
// in its own user namespace. SIGTERM to it reaches the build, which stops
// its step and fails; kill -9 of it takes the build, its step's init and
// the step's processes along.
func TestRunRootlessSignals(t *testing.T) {
	needStore(t)
	if _, err := os.Stat(fmt.Sprintf("/proc/self/task/%d/children", os.Getpid())); err != nil {
		t.Skipf("no /proc/PID/task/TID/children here to find kiln's processes: %v", err)
	}
	u := newRootlessUser(t, true)
	busybox := needBusybox(t)
	ctxDir := u.mkdir("ctx")
	copyFile(t, busybox, filepath.Join(ctxDir, "busybox"), 0o755)
	writeContext(t, ctxDir, map[string]string{"Dockerfile": "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"sleep\", \"60\"]\n"})
	work, cache := u.mkdir("work"), u.mkdir("cache")
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		cmd := u.command("build", "--progress", "plain", "--context", ctxDir, "--work-dir", work, "--cache-dir", cache,
			"--output", "oci:"+filepath.Join(work, "out"))
		logFile := filepath.Join(t.TempDir(), "stderr")
		f, err := os.Create(logFile)
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = f, f
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		f.Close()
		log := func() string { b, _ := os.ReadFile(logFile); return string(b) }
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(log(), `msg="RUN steps"`) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(300 * time.Millisecond) // into the step
		inner := descendants(cmd.Process.Pid)
		if len(inner) < 2 { // the step's init execs the step: one process (and no init is started ahead of a last RUN)
			t.Fatalf("%v: want kiln in its namespace and the step below kiln %d, have %v:\n%s", sig, cmd.Process.Pid, inner, log())
		}
		start := time.Now()
		_ = cmd.Process.Signal(sig)
		err = cmd.Wait()
		if sig == syscall.SIGTERM && (exitCode(err) != 1 || !strings.Contains(log(), "terminated")) {
			t.Errorf("after SIGTERM: exit %d, want 1 and the build stopped:\n%s", exitCode(err), log())
		}
		for _, pid := range inner {
			for alive(pid) && time.Since(start) < 10*time.Second {
				time.Sleep(50 * time.Millisecond)
			}
			if alive(pid) {
				t.Errorf("after %v of kiln %d: process %d still runs", sig, cmd.Process.Pid, pid)
				_ = syscall.Kill(pid, syscall.SIGKILL) // the test's own
			}
		}
	}
}

// descendants lists every process below pid.
func descendants(pid int) []int {
	var out []int
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, task := range tasks {
		b, _ := os.ReadFile(task)
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
				out = append(out, descendants(c)...)
			}
		}
	}
	return out
}

// alive says whether pid runs (a zombie does not).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z") && !strings.HasPrefix(rest, "X")
}

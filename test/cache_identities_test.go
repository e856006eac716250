package test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"kiln/test/harness"
)

// The shared cache as a platform team runs it: a root CronJob warms it, and
// build pods running as other users read it, often through a read-only
// mount, while the CronJob prunes through its own read-write one. These
// tests run kiln as other users (uid 65534, and two warmers sharing a
// group) and in private mount namespaces; they need root.

// identity is a user kiln runs as.
type identity struct {
	uid, gid uint32
	groups   []uint32
}

var nobody = identity{uid: 65534, gid: 65534}

// sharedArea is a folder every user may reach, holding a copy of kiln and
// an empty Docker config (the test binary's folder and t.TempDir are
// private to root).
type sharedArea struct {
	dir    string
	kiln   string
	home   string // HOME, TMPDIR and working folder of every run: world-writable
	docker string
}

func newSharedArea(t *testing.T) *sharedArea {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("running kiln as other users needs root")
	}
	dir, err := os.MkdirTemp("", "kiln-ids-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	a := &sharedArea{dir: dir, kiln: filepath.Join(dir, "kiln"), home: filepath.Join(dir, "home"), docker: filepath.Join(dir, "docker")}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, kilnBin, a.kiln, 0o755)
	a.mkdir(t, "docker", 0o755)
	a.mkdir(t, "home", 0o777|fs.ModeSticky)
	return a
}

// mkdir makes a folder of the area with exactly mode.
func (a *sharedArea) mkdir(t *testing.T, name string, mode fs.FileMode) string {
	t.Helper()
	p := filepath.Join(a.dir, name)
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// context writes a build context every user may read.
func (a *sharedArea) context(t *testing.T, name string, files map[string]string) string {
	t.Helper()
	dir := a.mkdir(t, name, 0o755)
	writeContext(t, dir, files)
	return dir
}

// cmd prepares kiln as id; prefix, if set, is a command kiln runs under
// (as root), such as a mount namespace that drops to id itself.
func (a *sharedArea) cmd(t *testing.T, ctx context.Context, id *identity, prefix []string, args ...string) (*exec.Cmd, func(error) result) {
	t.Helper()
	cmd, stdout, stderr := kilnCmd(t, ctx, runOpts{dir: a.home, env: []string{"DOCKER_CONFIG=" + a.docker, "HOME=" + a.home, "TMPDIR=" + a.home}}, args...)
	cmd.Path, cmd.Args[0] = a.kiln, a.kiln
	if len(prefix) > 0 {
		path, err := exec.LookPath(prefix[0])
		if err != nil {
			t.Skipf("%s not installed: %v", prefix[0], err)
		}
		cmd.Path = path
		cmd.Args = append(slices.Clone(prefix), cmd.Args...)
	}
	if id != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: id.uid, Gid: id.gid, Groups: id.groups}}
	}
	who := "root"
	switch {
	case id != nil:
		who = fmt.Sprintf("uid %d", id.uid)
	case len(prefix) > 0:
		who = prefix[0]
	}
	done := func(err error) result {
		r := result{args: args, code: exitCode(err), stdout: stdout.String(), stderr: stderr.String()}
		t.Logf("kiln %s as %s: exit %d", strings.Join(args, " "), who, r.code)
		return r
	}
	return cmd, done
}

// run runs kiln as id to the end.
func (a *sharedArea) run(t *testing.T, id identity, args ...string) result {
	t.Helper()
	return a.runWith(t, &id, nil, args...)
}

func (a *sharedArea) runWith(t *testing.T, id *identity, prefix []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), defaultTimeout)
	defer cancel()
	cmd, done := a.cmd(t, ctx, id, prefix, args...)
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("running kiln: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("kiln did not finish within %s:\n%s", defaultTimeout, done(err))
	}
	return done(err)
}

// readOnly is the prefix that runs kiln as nobody in a private mount
// namespace where cache is bind-mounted read-only at ro: what a pod with
// readOnly: true and runAsUser: 65534 sees. Nothing outlives the process.
func (a *sharedArea) readOnly(t *testing.T, cache string) (prefix []string, ro string) {
	t.Helper()
	for _, tool := range []string{"unshare", "setpriv"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s (util-linux) not installed", tool)
		}
	}
	if out, err := exec.Command("unshare", "--mount", "--propagation", "private", "true").CombinedOutput(); err != nil {
		t.Skipf("cannot make a mount namespace here: %v %s", err, out)
	}
	ro, err := os.MkdirTemp(a.dir, "ro-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(ro, 0o755); err != nil {
		t.Fatal(err)
	}
	script := `mount --bind "$1" "$2" && mount -o remount,bind,ro "$2" && shift 2 && ` +
		`exec setpriv --reuid 65534 --regid 65534 --clear-groups "$@"`
	return []string{"unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script, "sh", cache, ro}, ro
}

// wantModes checks the modes of a cache's files: blobs 0444, the other
// files file, folders dir, and everything of group gid if gid >= 0.
func wantModes(t *testing.T, cache string, dir, file fs.FileMode, gid int) {
	t.Helper()
	bad := 0
	err := filepath.WalkDir(cache, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(cache, p)
		if rel == "." || strings.HasPrefix(rel, filepath.Join(".kiln", "run-cache")) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		want := file
		switch {
		case d.IsDir():
			want = dir
		case strings.HasPrefix(rel, filepath.Join("blobs", "sha256")+string(filepath.Separator)):
			want = 0o444
		}
		have := fi.Mode() & (fs.ModePerm | fs.ModeSetgid)
		if have != want&(fs.ModePerm|fs.ModeSetgid) {
			t.Errorf("%s: mode %v, want %v", rel, have, want)
			bad++
		}
		if st := fi.Sys().(*syscall.Stat_t); gid >= 0 && int(st.Gid) != gid {
			t.Errorf("%s: group %d, want %d", rel, st.Gid, gid)
			bad++
		}
		if bad > 10 {
			return filepath.SkipAll
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// noRequests fails the test if the proxy saw any request.
func noRequests(t *testing.T, log *requestLog, what string) {
	t.Helper()
	if reqs := log.all(); len(reqs) > 0 {
		t.Errorf("%s made %d registry requests, want none: %v", what, len(reqs), reqs)
	}
}

// wantBuiltOn checks that the image built into the OCI layout out is the
// base's layers and n more.
func wantBuiltOn(t *testing.T, out string, base v1.Image, n int) {
	t.Helper()
	got, want := layerDigests(t, layoutImage(t, out, "image")), layerDigests(t, base)
	if len(got) != len(want)+n || !slices.Equal(got[:len(want)], want) {
		t.Errorf("built layers %v, want the base's %v and %d more", got, want, n)
	}
}

// TestCacheNonRootBuild: a cache warmed by root is readable by everyone
// (blobs 0444, files 0644, folders 0755), so a build running as uid 65534
// works from it offline with zero registry requests, on the read-write
// volume and through a read-only bind mount alike, taking the shared lock
// on a read-only descriptor; kiln warm --verify works as that user too,
// and so does a warm that finds everything cached. A RUN --mount=type=cache
// step, whose shared folder that user may not write, gets a folder of its
// own instead of failing.
func TestCacheNonRootBuild(t *testing.T) {
	t.Parallel()
	a := newSharedArea(t)
	reg := harness.NewRegistry(t)
	bases := pushBaseImages(t, reg.Addr)
	proxy, log := newCountingProxy(t, reg.Addr)
	base := proxy.Addr + "/library/base:1"
	cache := filepath.Join(a.mkdir(t, "volume", 0o755), "cache")
	mustExit(t, runKiln(t, "warm", "--cache-dir", cache, "--image", base, "--platform", "linux/amd64"), 0)
	wantModes(t, cache, 0o755, 0o644, -1)
	ctxDir := a.context(t, "ctx", map[string]string{"Dockerfile": "FROM " + base + "\nCOPY a.txt /a.txt\n", "a.txt": "as nobody\n"})
	build := func(cacheDir, out string) []string {
		return []string{"build", "--cache-dir", cacheDir, "--offline", "--context", ctxDir, "--platform", "linux/amd64", "--output", "oci:" + out}
	}

	t.Run("read-write volume", func(t *testing.T) {
		log.reset()
		out := filepath.Join(a.home, "out-rw")
		r := a.run(t, nobody, build(cache, out)...)
		mustExit(t, r, 0)
		noRequests(t, log, "an offline build from the cache")
		wantBuiltOn(t, out, bases["amd64"], 1)
		if strings.Contains(r.stderr, "without its lock") {
			t.Errorf("the build read the cache without its lock, which it may take read-only:\n%s", r)
		}
		mustExit(t, a.run(t, nobody, "warm", "--verify", "--cache-dir", cache), 0)
		r = a.run(t, nobody, "warm", "--cache-dir", cache, "--image", base, "--platform", "linux/amd64")
		mustExit(t, r, 0)
		noRequests(t, log, "a warm that finds everything cached")
	})

	t.Run("read-only mount", func(t *testing.T) {
		log.reset()
		prefix, ro := a.readOnly(t, cache)
		out := filepath.Join(a.home, "out-ro")
		r := a.runWith(t, nil, prefix, build(ro, out)...)
		mustExit(t, r, 0)
		noRequests(t, log, "an offline build through a read-only mount")
		wantBuiltOn(t, out, bases["amd64"], 1)
		if strings.Contains(r.stderr, "without its lock") {
			t.Errorf("the build read the cache without its lock, which it may take read-only:\n%s", r)
		}
		r = a.runWith(t, nil, prefix, "warm", "--verify", "--cache-dir", ro)
		mustExit(t, r, 0)
		r = a.runWith(t, nil, prefix, "warm", "--cache-dir", ro, "--image", base, "--platform", "linux/amd64")
		mustExit(t, r, 0)
		noRequests(t, log, "a warm through a read-only mount that finds everything cached")
	})

	t.Run("RUN cache mount", func(t *testing.T) {
		busybox := needBusybox(t)
		dir := a.context(t, "ctx-run", map[string]string{"Dockerfile": `FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN --mount=type=cache,target=/var/cache/x sh -c 'echo cached > /var/cache/x/f && cat /var/cache/x/f'
`})
		copyFile(t, busybox, filepath.Join(dir, "busybox"), 0o755)
		run := []string{"build", "--progress", "plain", "--context", dir, "--platform", "linux/amd64", "--no-push"}
		r := a.run(t, nobody, append(run, "--cache-dir", cache)...)
		if strings.Contains(r.stderr, "namespaces are not permitted") || strings.Contains(r.stderr, "may not create namespaces") {
			t.Skipf("user namespaces are not permitted here:\n%s", r)
		}
		mustExit(t, r, 0)
		if !strings.Contains(r.stderr, "not writable by this user") {
			t.Errorf("the build should say it used a cache folder of its own:\n%s", r)
		}
		prefix, ro := a.readOnly(t, cache)
		r = a.runWith(t, nil, prefix, append(run, "--cache-dir", ro)...)
		mustExit(t, r, 0)
	})
	verifyCache(t, cache)
	wantModes(t, cache, 0o755, 0o644, -1)
}

// TestCacheReadOnlyWithoutLock: a cache with no lock file (made by another
// tool, or its .kiln folder lost) mounted read-only cannot be locked at
// all; the build reads it lock-free and says so once, naming what protects
// it then (--prune-grace).
func TestCacheReadOnlyWithoutLock(t *testing.T) {
	t.Parallel()
	a := newSharedArea(t)
	reg := harness.NewRegistry(t)
	bases := pushBaseImages(t, reg.Addr)
	base := reg.Ref("library/base:1")
	cache := filepath.Join(a.mkdir(t, "volume", 0o755), "cache")
	mustExit(t, runKiln(t, "warm", "--cache-dir", cache, "--image", base, "--platform", "linux/amd64"), 0)
	if err := os.RemoveAll(filepath.Join(cache, ".kiln")); err != nil {
		t.Fatal(err)
	}
	ctxDir := a.context(t, "ctx", map[string]string{"Dockerfile": "FROM " + base + "\nCOPY a.txt /a.txt\n", "a.txt": "lock-free\n"})
	prefix, ro := a.readOnly(t, cache)
	out := filepath.Join(a.home, "out")
	r := a.runWith(t, nil, prefix, "build", "--cache-dir", ro, "--offline", "--context", ctxDir, "--platform", "linux/amd64", "--output", "oci:"+out)
	mustExit(t, r, 0)
	wantBuiltOn(t, out, bases["amd64"], 1)
	if n := strings.Count(r.stderr, "without its lock"); n != 1 {
		t.Errorf("the build should say once that it reads the cache without its lock (said %d times):\n%s", n, r)
	}
	if !strings.Contains(r.stderr, "--prune-grace") {
		t.Errorf("the notice should name what protects the build then (--prune-grace):\n%s", r)
	}
}

// TestCacheSharedGroup: two warmers running as two users that share a
// group warm one volume that is setgid and group-writable (a Kubernetes
// fsGroup volume), one after the other and then at the same time, and
// prune each other's blobs: all succeed, the cache verifies, and what they
// made is group-writable (folders 2775, files 0664, blobs 0444) and of the
// volume's group; a user outside the group still builds from it.
func TestCacheSharedGroup(t *testing.T) {
	t.Parallel()
	a := newSharedArea(t)
	reg := harness.NewRegistry(t)
	x, y, z := pruneFixtures(t, reg)
	const group = 4242
	alice := identity{uid: 2001, gid: 2001, groups: []uint32{group}}
	bob := identity{uid: 2002, gid: 2002, groups: []uint32{group}}
	amd := []string{"--platform", "linux/amd64"}

	for _, tc := range []struct {
		name string
		sub  string // the cache folder inside the volume; "" = the volume itself
	}{
		{name: "volume root"},
		{name: "folder in the volume", sub: "kiln"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vol := a.mkdir(t, "vol-"+strings.ReplaceAll(tc.name, " ", "-"), 0o755)
			if err := os.Chown(vol, 0, group); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(vol, 0o775|fs.ModeSetgid); err != nil {
				t.Fatal(err)
			}
			cache := filepath.Join(vol, tc.sub)
			warm := func(refs ...string) []string {
				args := append([]string{"warm", "--cache-dir", cache}, amd...)
				for _, r := range refs {
					args = append(args, "--image", r)
				}
				return args
			}
			mustExit(t, a.run(t, alice, warm(x)...), 0)
			mustExit(t, a.run(t, bob, warm(y)...), 0)

			ctx, cancel := context.WithTimeout(t.Context(), defaultTimeout)
			defer cancel()
			c1, done1 := a.cmd(t, ctx, &alice, nil, warm(x, y, z)...)
			c2, done2 := a.cmd(t, ctx, &bob, nil, warm(z, y)...)
			for _, c := range []*exec.Cmd{c1, c2} {
				if err := c.Start(); err != nil {
					t.Fatal(err)
				}
			}
			err1, err2 := c1.Wait(), c2.Wait()
			mustExit(t, done1(err1), 0)
			mustExit(t, done2(err2), 0)

			// Bob prunes what Alice warmed alone.
			mustExit(t, a.run(t, bob, append(warm(y, z), "--prune")...), 0)
			if keys := entryKeys(t, cache); !slices.Equal(keys, []string{y, z}) {
				t.Errorf("index.json names %v after bob's prune, want [%s %s]", keys, y, z)
			}
			mustExit(t, a.run(t, alice, "warm", "--verify", "--cache-dir", cache), 0)
			verifyCache(t, cache)
			validateCache(t, cache)
			wantModes(t, cache, 0o775|fs.ModeSetgid, 0o664, group)

			base := y
			ctxDir := a.context(t, "ctx-"+strings.ReplaceAll(tc.name, " ", "-"), map[string]string{"Dockerfile": "FROM " + base + "\nCOPY a.txt /a.txt\n", "a.txt": "outsider\n"})
			mustExit(t, a.run(t, nobody, "build", "--cache-dir", cache, "--offline", "--context", ctxDir, "--platform", "linux/amd64", "--no-push"), 0)
		})
	}
}

// gate is an HTTP server whose /slow answer waits until it is opened: a
// build that ADDs it is held at that step, holding the cache's lock.
type gate struct {
	url     string
	reached chan struct{}
	open    chan struct{}
}

func newGate(t *testing.T) *gate {
	t.Helper()
	g := &gate{reached: make(chan struct{}, 8), open: make(chan struct{})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.reached <- struct{}{}
		select {
		case <-g.open:
		case <-r.Context().Done():
			return
		}
		fmt.Fprintln(w, "added after the wait")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() {
		select {
		case <-g.open:
		default:
			close(g.open)
		}
		srv.Close()
	})
	g.url = "http://" + ln.Addr().String() + "/slow"
	return g
}

// background is a kiln process running while the test goes on.
type background struct {
	done chan struct{}
	err  error
	res  func(error) result
}

func startBackground(t *testing.T, cmd *exec.Cmd, res func(error) result) *background {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	b := &background{done: make(chan struct{}), res: res}
	go func() {
		b.err = cmd.Wait()
		close(b.done)
	}()
	return b
}

func (b *background) wait() result {
	<-b.done
	return b.res(b.err)
}

// waitReached waits until a build asks the gate for its file.
func (g *gate) waitReached(t *testing.T, build *background) {
	t.Helper()
	select {
	case <-g.reached:
	case <-build.done:
		t.Fatalf("the build ended before its ADD:\n%s", build.wait())
	case <-time.After(defaultTimeout):
		t.Fatal("the build never reached its ADD")
	}
}

// startReadOnlyBuild starts a build as nobody through a read-only mount of
// cache, on base, whose ADD waits at the gate.
func startReadOnlyBuild(t *testing.T, ctx context.Context, a *sharedArea, cache, base string, g *gate, out string) *background {
	t.Helper()
	ctxDir := a.context(t, "ctx-"+filepath.Base(out), map[string]string{"Dockerfile": "FROM " + base + "\nADD " + g.url + " /slow.txt\n"})
	prefix, ro := a.readOnly(t, cache)
	cmd, done := a.cmd(t, ctx, nil, prefix, "build", "--progress", "plain", "--cache-dir", ro, "--offline",
		"--context", ctxDir, "--platform", "linux/amd64", "--output", "oci:"+out)
	return startBackground(t, cmd, done)
}

// TestCachePruneWhileReadOnlyBuild: the nightly prune (root, read-write)
// runs while a build as uid 65534 reads the base it is about to drop
// through a read-only mount. The build's shared lock, taken on a read-only
// descriptor, holds across the two mounts: prune waits for the build, the
// build succeeds with the base's layers, and then prune drops the base;
// the cache verifies clean.
func TestCachePruneWhileReadOnlyBuild(t *testing.T) {
	t.Parallel()
	a := newSharedArea(t)
	reg := harness.NewRegistry(t)
	keep, drop, _ := pruneFixtures(t, reg)
	cache := filepath.Join(a.mkdir(t, "volume", 0o755), "cache")
	amd := []string{"--platform", "linux/amd64"}
	mustExit(t, runKiln(t, append([]string{"warm", "--cache-dir", cache, "--image", keep, "--image", drop}, amd...)...), 0)
	dropBlobs := imageBlobs(t, cache, entryManifests(t, cache, drop)["linux/amd64"].Digest)

	ctx, cancel := context.WithTimeout(t.Context(), defaultTimeout)
	defer cancel()
	g := newGate(t)
	out := filepath.Join(a.home, "out")
	build := startReadOnlyBuild(t, ctx, a, cache, drop, g, out)
	g.waitReached(t, build)

	pruneCmd, pruneDone := a.cmd(t, ctx, nil, nil, append([]string{"warm", "--cache-dir", cache, "--image", keep, "--prune"}, amd...)...)
	prune := startBackground(t, pruneCmd, pruneDone)
	time.Sleep(2 * time.Second)
	if _, ok := entry(t, cache, drop); !ok {
		t.Errorf("prune dropped %s while a build through a read-only mount used it", drop)
	}
	for _, h := range dropBlobs {
		if !hasBlob(cache, h) {
			t.Errorf("prune deleted %s while a build through a read-only mount used it", h)
		}
	}
	close(g.open)
	br := build.wait()
	mustExit(t, br, 0)
	pr := prune.wait()
	mustExit(t, pr, 0)
	if !strings.Contains(pr.output(), "waiting for builds") {
		t.Errorf("prune should have waited for the build:\n%s", pr)
	}
	if keys := entryKeys(t, cache); !slices.Equal(keys, []string{keep}) {
		t.Errorf("index.json names %v after the prune, want [%s]", keys, keep)
	}
	img := layoutImage(t, out, "image")
	if got := layerDigests(t, img); len(got) != len(dropBlobs)-1 || !slices.Equal(got[:len(dropBlobs)-2], dropBlobs[2:]) {
		t.Errorf("built layers %v, want the base's %v and one more", got, dropBlobs[2:])
	}
	verifyCache(t, cache)
}

// TestCachePruneGrace: a build that cannot lock the cache (read-only, no
// lock file) is protected by prune's grace period alone: a prune with
// --prune-grace drops the entry the build uses but keeps its blobs, the
// build succeeds and the cache verifies; once the grace period is over
// (--prune-grace 0), the next prune deletes them. A warm that replaces an
// entry (its tag moved) leaves the old image's blobs under the same rule.
func TestCachePruneGrace(t *testing.T) {
	t.Parallel()
	a := newSharedArea(t)
	reg := harness.NewRegistry(t)
	keep, drop, moved := pruneFixtures(t, reg)
	cache := filepath.Join(a.mkdir(t, "volume", 0o755), "cache")
	amd := []string{"--platform", "linux/amd64"}
	mustExit(t, runKiln(t, append([]string{"warm", "--cache-dir", cache, "--image", keep, "--image", drop, "--image", moved}, amd...)...), 0)
	dropBlobs := imageBlobs(t, cache, entryManifests(t, cache, drop)["linux/amd64"].Digest)
	oldMoved := imageBlobs(t, cache, entryManifests(t, cache, moved)["linux/amd64"].Digest)
	if err := os.RemoveAll(filepath.Join(cache, ".kiln")); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), defaultTimeout)
	defer cancel()
	g := newGate(t)
	out := filepath.Join(a.home, "out")
	build := startReadOnlyBuild(t, ctx, a, cache, drop, g, out)
	g.waitReached(t, build)

	// The tag moves and a refresh files the new image, then a prune runs
	// while the build still reads: it cannot wait for a build that holds
	// no lock.
	pushIndex(t, moved, harness.ImageSpec{Platform: "linux/amd64", Layers: layers(7051, 2, 128<<10)})
	rep := filepath.Join(t.TempDir(), "report.json")
	pr := runKiln(t, append([]string{"warm", "--cache-dir", cache, "--image", keep, "--image", moved, "--refresh", "--max-age", "0s",
		"--prune", "--prune-grace", "1h", "--report", rep}, amd...)...)
	mustExit(t, pr, 0)
	pruned := readReport(t, rep).Pruned
	if pruned == nil || !slices.Equal(pruned.Entries, []string{drop}) || pruned.Blobs != 0 {
		t.Errorf("prune with a grace period: %+v, want %s dropped and no blob deleted", pruned, drop)
	}
	for _, h := range append(slices.Clone(dropBlobs), oldMoved...) {
		if !hasBlob(cache, h) {
			t.Errorf("prune deleted %s within its grace period", h)
		}
	}
	close(g.open)
	br := build.wait()
	mustExit(t, br, 0)
	if !strings.Contains(br.stderr, "without its lock") {
		t.Errorf("the build should say it reads the cache without its lock:\n%s", br)
	}
	if got := layerDigests(t, layoutImage(t, out, "image")); len(got) != len(dropBlobs)-1 {
		t.Errorf("built layers %v, want the base's %v and one more", got, dropBlobs[2:])
	}
	verifyCache(t, cache)

	rep2 := filepath.Join(t.TempDir(), "report.json")
	mustExit(t, runKiln(t, append([]string{"warm", "--cache-dir", cache, "--image", keep, "--image", moved, "--prune", "--prune-grace", "0s", "--report", rep2}, amd...)...), 0)
	if p := readReport(t, rep2).Pruned; p == nil || len(p.Entries) != 0 || p.Blobs == 0 {
		t.Errorf("prune after the grace period: %+v, want no entry dropped and the retired blobs deleted", p)
	}
	for _, h := range append(slices.Clone(dropBlobs[:2]), oldMoved[:2]...) { // manifests and configs: not shared
		if hasBlob(cache, h) {
			t.Errorf("prune after the grace period kept %s", h)
		}
	}
	verifyCache(t, cache)
	validateCache(t, cache)
}

// blobInodes maps every blob of a cache to its inode.
func blobInodes(t *testing.T, cache string) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	entries, err := os.ReadDir(filepath.Join(cache, "blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = fi.Sys().(*syscall.Stat_t).Ino
	}
	return out
}

// chmodBlobs gives every blob mode, as an older kiln left them (0600).
func chmodBlobs(t *testing.T, cache string, mode fs.FileMode) {
	t.Helper()
	for name := range blobInodes(t, cache) {
		if err := os.Chmod(filepath.Join(cache, "blobs", "sha256", name), mode); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCacheRepairsOldModes: a cache written by an older kiln (blobs 0600)
// fails a non-root build with a message that says why and what fixes it;
// the next kiln warm makes every blob readable in place (same inodes, no
// download), after which the build works. kiln warm --verify --repair does
// the same, and also removes a blob whose content is damaged, which the
// next warm then fetches again, alone.
func TestCacheRepairsOldModes(t *testing.T) {
	t.Parallel()
	a := newSharedArea(t)
	reg := harness.NewRegistry(t)
	bases := pushBaseImages(t, reg.Addr)
	proxy, log := newCountingProxy(t, reg.Addr)
	base := proxy.Addr + "/library/base:1"
	cache := filepath.Join(a.mkdir(t, "volume", 0o755), "cache")
	warm := []string{"warm", "--cache-dir", cache, "--image", base, "--platform", "linux/amd64"}
	mustExit(t, runKiln(t, warm...), 0)
	ctxDir := a.context(t, "ctx", map[string]string{"Dockerfile": "FROM " + base + "\nCOPY a.txt /a.txt\n", "a.txt": "repaired\n"})
	build := []string{"build", "--cache-dir", cache, "--offline", "--context", ctxDir, "--platform", "linux/amd64", "--output", "oci:" + filepath.Join(a.home, "out")}

	chmodBlobs(t, cache, 0o600)
	inodes := blobInodes(t, cache)
	r := a.run(t, nobody, build...)
	mustExit(t, r, 1) // the cache's fault, not the Dockerfile's, though met at its FROM line
	for _, want := range []string{"uid 65534", "0600", "kiln warm"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("a build on a blob it may not read should say %q:\n%s", want, r)
		}
	}
	r = a.run(t, nobody, "warm", "--verify", "--cache-dir", cache)
	mustExit(t, r, 1)
	if !strings.Contains(r.stdout, "not readable by uid 65534") {
		t.Errorf("verify as another user should report blobs it may not read:\n%s", r)
	}

	t.Run("next warm", func(t *testing.T) {
		log.reset()
		mustExit(t, runKiln(t, warm...), 0)
		noRequests(t, log, "a warm of a cached image")
		if now := blobInodes(t, cache); !maps.Equal(now, inodes) {
			t.Errorf("the warm replaced blobs instead of fixing their modes:\nbefore %v\nafter  %v", inodes, now)
		}
		wantModes(t, cache, 0o755, 0o644, -1)
		mustExit(t, a.run(t, nobody, build...), 0)
		noRequests(t, log, "an offline build")
	})

	t.Run("verify --repair", func(t *testing.T) {
		chmodBlobs(t, cache, 0o600)
		layer := layerDigests(t, bases["amd64"])[0]
		p := blobPath(cache, layer)
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		data[len(data)/2] ^= 0xff
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		r := a.run(t, nobody, build...)
		if r.code == 0 {
			t.Fatalf("a build on a damaged and unreadable cache succeeded:\n%s", r)
		}
		r = runKiln(t, "warm", "--verify", "--repair", "--cache-dir", cache)
		mustExit(t, r, 1)
		if !strings.Contains(r.stdout, "removed 1 damaged blobs") || !strings.Contains(r.stderr, "run kiln warm") {
			t.Errorf("verify --repair should say it removed the damaged blob and what to run next:\n%s", r)
		}
		if hasBlob(cache, layer) {
			t.Errorf("verify --repair kept the damaged blob %s", layer)
		}
		wantModes(t, cache, 0o755, 0o644, -1)
		for name, ino := range blobInodes(t, cache) {
			if inodes[name] != ino {
				t.Errorf("blob %s was replaced, not repaired in place", name)
			}
		}
		log.reset()
		mustExit(t, runKiln(t, warm...), 0)
		if got := log.count(http.MethodGet, anyBlob); got != 1 {
			t.Errorf("the warm after the repair fetched %d blobs, want 1 (the removed one): %v", got, log.all())
		}
		verifyCache(t, cache)
		mustExit(t, a.run(t, nobody, build...), 0)
	})
}

// TestCacheAccessErrors: a cache folder this user can neither read nor
// lock fails a build (and a verify) with exit 1 and a message that names
// the uid, the folder and its mode, and says how to fix it; a warm that
// must write to a cache this user may not write to says so the same way,
// for what it lacks.
func TestCacheAccessErrors(t *testing.T) {
	t.Parallel()
	a := newSharedArea(t)
	reg := harness.NewRegistry(t)
	pushBaseImages(t, reg.Addr)
	base := reg.Ref("library/base:1")
	other := reg.Ref("library/other:1")
	pushImage(t, other, harness.ImageSpec{Platform: "linux/amd64", Layers: layers(9101, 1, 32<<10)})
	cache := filepath.Join(a.mkdir(t, "volume", 0o755), "cache")
	mustExit(t, runKiln(t, "warm", "--cache-dir", cache, "--image", base, "--platform", "linux/amd64"), 0)
	ctxDir := a.context(t, "ctx", map[string]string{"Dockerfile": "FROM " + base + "\nCOPY a.txt /a.txt\n", "a.txt": "x\n"})

	t.Run("unreadable", func(t *testing.T) {
		if err := os.Chmod(cache, 0o700); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(cache, 0o755)
		for _, args := range [][]string{
			{"build", "--cache-dir", cache, "--offline", "--context", ctxDir, "--platform", "linux/amd64", "--no-push"},
			{"build", "--cache-dir", cache, "--context", ctxDir, "--platform", "linux/amd64", "--no-push"},
			{"warm", "--verify", "--cache-dir", cache},
		} {
			r := a.run(t, nobody, args...)
			mustExit(t, r, 1)
			for _, want := range []string{"uid 65534", cache, "0700", "owned by uid 0", "fsGroup", "readOnly"} {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("the error should say %q:\n%s", want, r)
				}
			}
		}
	})

	t.Run("not writable", func(t *testing.T) {
		r := a.run(t, nobody, "warm", "--cache-dir", cache, "--image", other, "--image", base, "--platform", "linux/amd64", "--report", filepath.Join(a.home, "report.json"))
		mustExit(t, r, 1)
		for _, want := range []string{"uid 65534", "cannot write to", cache, "0755", "fsGroup"} {
			if !strings.Contains(r.output(), want) {
				t.Errorf("the error should say %q:\n%s", want, r)
			}
		}
		wantStatuses(t, readReport(t, filepath.Join(a.home, "report.json")), map[string]string{
			base + " linux/amd64": "fresh", other + " linux/amd64": "failed",
		})
	})
}

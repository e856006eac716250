package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
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
	dir := t.TempDir()
	// Let nobody reach its folder: t.TempDir's parent is private to root.
	for p := dir; p != os.TempDir() && p != "/"; p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ctxDir := filepath.Join(dir, "ctx")
	work := filepath.Join(dir, "work")
	for _, d := range []string{ctxDir, work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(work, 0o777); err != nil {
		t.Fatal(err)
	}
	copyFile(t, busybox, filepath.Join(ctxDir, "busybox"), 0o755)
	kiln := filepath.Join(dir, "kiln") // the test binary's folder is private to root
	copyFile(t, kilnBin, kiln, 0o755)
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
	args := []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		kiln, "build", "--progress", "plain", "--context", ctxDir, "--output", "oci:" + out,
		"--cache-dir", filepath.Join(work, "cache"), "--work-dir", work, "--reproducible"}
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
		sub := filepath.Join(dir, "subid")
		if err := os.WriteFile(sub, []byte("nobody:300000:65536\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		script := `mount --bind "$1" /etc/subuid && mount --bind "$1" /etc/subgid && shift && exec "$@"`
		args = append([]string{"unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script, "sh", sub}, args...)
	}
	cmd := exec.CommandContext(t.Context(), args[0], args[1:]...)
	cmd.Env = append(baseEnv(), "HOME="+work, "TMPDIR="+work, "DOCKER_CONFIG="+work)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String(), code: exitCode(err)}
	if r.code != 0 && (strings.Contains(r.stderr, "namespaces are not permitted") || strings.Contains(r.stderr, "may not create namespaces")) {
		t.Skipf("user namespaces are not permitted here:\n%s", r)
	}
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

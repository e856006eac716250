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
// they made as the namespace sees it (root's), not as the host's ids.
func TestRunRootless(t *testing.T) {
	t.Parallel()
	busybox := needBusybox(t)
	if os.Geteuid() != 0 {
		t.Skip("switching to another user needs root")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("setpriv (util-linux) not installed")
	}
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
`})
	out := filepath.Join(work, "out")
	cmd := exec.CommandContext(t.Context(), "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		kiln, "build", "--progress", "plain", "--context", ctxDir, "--output", "oci:"+out,
		"--cache-dir", filepath.Join(work, "cache"), "--work-dir", work, "--reproducible")
	cmd.Env = append(baseEnv(), "HOME="+work, "TMPDIR="+work, "DOCKER_CONFIG="+work)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String(), code: exitCode(err)}
	if r.code != 0 && strings.Contains(r.stderr, "user namespaces") {
		t.Skipf("user namespaces are not permitted here:\n%s", r)
	}
	mustExit(t, r, 0)
	if !strings.Contains(r.stderr, "isolation=rootless") {
		t.Errorf("kiln should pick rootless isolation as uid 65534:\n%s", r)
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
}

package test

import (
	"archive/tar"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRunUnderDocker: kiln's own image (deploy/image/Dockerfile, built by
// kiln) run by a real Docker engine as an ordinary, unprivileged container
// picks container isolation by itself and builds a Dockerfile with RUN
// steps, leaving its volume and its own folder out of every layer. The
// engine is Debian's docker.io, started here on a private socket and data
// folder; the test skips where it is not installed or cannot start.
func TestRunUnderDocker(t *testing.T) {
	t.Parallel()
	needBusybox(t)
	docker := startDocker(t)

	// kiln's image, from the shipped Dockerfile, with this test's binary.
	imgCtx := kilnImageContext(t, runtime.GOARCH)
	tarball := filepath.Join(t.TempDir(), "kiln.tar")
	mustExit(t, runKiln(t, "build", "--context", imgCtx, "--target", "kiln", "--tar-path", tarball, "--no-push", "--destination", "kiln-e2e:test"), 0)
	docker("load", "-i", tarball)

	ws := t.TempDir()
	ctxDir := filepath.Join(ws, "ctx")
	busyboxContext(t, ctxDir, `FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN mkdir -p /etc /srv && echo "app:x:1000:1000::/srv:/bin/sh" > /etc/passwd && echo "app:x:1000:" > /etc/group \
 && chown app:app /srv && ls / > /root-listing
USER app
RUN echo made by $(id -u) > /srv/owned
`)
	out := docker("run", "--rm", "-v", ws+":/workspace", "kiln-e2e:test",
		"build", "--progress", "plain", "--context", "/workspace/ctx", "--output", "oci:/workspace/out", "--reproducible")
	if !strings.Contains(out, "isolation=container") {
		t.Errorf("kiln in an unprivileged container should pick container isolation:\n%s", out)
	}
	img := layoutImage(t, filepath.Join(ws, "out"), "image")
	tree, _ := flatten(t, img)
	files := byPath(tree)
	if e, ok := files["/srv/owned"]; !ok || e.UID != 1000 || e.GID != 1000 {
		t.Errorf("/srv/owned = %+v, want a file of 1000:1000 (made by USER app)", e)
	}
	eachLayerEntry(t, img, func(i int, hdr *tar.Header, _ io.Reader) {
		top := strings.SplitN(strings.TrimPrefix(hdr.Name, "./"), "/", 2)[0]
		switch top {
		case "kiln", "kaniko", "workspace", "proc", "sys", "dev", ".dockerenv":
			t.Errorf("layer %d holds %s, the container's own", i, hdr.Name)
		}
		if n := strings.TrimSuffix(hdr.Name, "/"); n == "etc/hosts" || n == "etc/resolv.conf" || n == "etc/hostname" {
			t.Errorf("layer %d holds %s, a file the engine mounts", i, hdr.Name)
		}
	})
}

// startDocker starts a Docker engine of its own for the test and returns
// a function running the docker client against it (failing the test on
// error). It skips when dockerd is not installed or does not come up.
func startDocker(t *testing.T) func(args ...string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("dockerd needs root")
	}
	dockerd, err := exec.LookPath("dockerd")
	if err != nil {
		t.Skip("dockerd not installed (Debian: apt-get install docker.io)")
	}
	client, err := exec.LookPath("docker")
	if err != nil {
		t.Skip("the docker client is not installed")
	}
	dir := t.TempDir() // /tmp/TestRunUnderDocker…/001: short enough for unix socket paths (107 bytes)
	sock := "unix://" + filepath.Join(dir, "docker.sock")
	logFile, err := os.Create(filepath.Join(dir, "dockerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(dockerd, "--storage-driver=overlay2", "--iptables=false", "--ip6tables=false", "--bridge=none",
		"-H", sock, "--data-root", filepath.Join(dir, "data"), "--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "dockerd.pid"))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		t.Skipf("starting dockerd: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM) // dockerd stops the containerd it started
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logFile.Close()
		_ = exec.Command("umount", "-R", filepath.Join(dir, "data")).Run() // nothing should be left; make sure
		// --network host leaves the engine's own network namespace mounted.
		netns, _ := filepath.Glob(filepath.Join(dir, "exec", "netns", "*"))
		for _, ns := range netns {
			_ = exec.Command("umount", ns).Run()
		}
	})
	ready := false
	for deadline := time.Now().Add(45 * time.Second); time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
		if exec.Command(client, "-H", sock, "info").Run() == nil {
			ready = true
			break
		}
		select {
		case <-done:
			deadline = time.Now()
		default:
		}
	}
	if !ready {
		log, _ := os.ReadFile(filepath.Join(dir, "dockerd.log"))
		t.Skipf("dockerd did not come up here; its log ends:\n%s", tail(string(log), 15))
	}
	return func(args ...string) string {
		t.Helper()
		c := exec.CommandContext(t.Context(), client, append([]string{"-H", sock}, args...)...)
		out, err := c.CombinedOutput()
		if err != nil {
			t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

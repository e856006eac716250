package test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRunKilled: kiln killed with SIGKILL in the middle of a RUN step leaves
// its work folder behind, the step's overlay perhaps still mounted in it;
// the next build in the same work folder removes both, and builds.
func TestRunKilled(t *testing.T) {
	t.Parallel()
	busybox := needBusybox(t)
	ctxDir, work := t.TempDir(), t.TempDir()
	copyFile(t, busybox, filepath.Join(ctxDir, "busybox"), 0o755)
	writeContext(t, ctxDir, map[string]string{"Dockerfile": "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"sleep\", \"60\"]\n"})
	args := []string{"build", "--progress", "plain", "--context", ctxDir, "--work-dir", work, "--output", "oci:" + filepath.Join(t.TempDir(), "oci")}

	cmd, _, stderr := kilnCmd(t, t.Context(), runOpts{}, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(stderr.String(), "RUN steps") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // into the step
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	left, _ := filepath.Glob(filepath.Join(work, "kiln-build-*"))
	if len(left) != 1 {
		t.Fatalf("after kill -9: %d work folders, want the dead build's one:\n%s", len(left), stderr)
	}
	t.Logf("left behind: %s; mounted in it: %v", left[0], mountedBelow(t, left[0]))

	writeContext(t, ctxDir, map[string]string{"Dockerfile": "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"true\"]\n"})
	r := runKiln(t, args...)
	mustExit(t, r, 0)
	if !strings.Contains(r.stderr, "removed the work folder of a build that died") {
		t.Errorf("the next build should say it removed the dead build's folder:\n%s", r)
	}
	if _, err := os.Stat(left[0]); !os.IsNotExist(err) {
		t.Errorf("%s is still there (%v)", left[0], err)
	}
	if m := mountedBelow(t, left[0]); len(m) > 0 {
		t.Errorf("still mounted: %v", m)
	}
}

// mountedBelow lists this process's mount points below dir.
func mountedBelow(t *testing.T, dir string) []string {
	t.Helper()
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(info), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			out = append(out, f[4])
		}
	}
	return out
}

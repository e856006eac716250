package run

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMain(m *testing.M) {
	MaybeInit()
	os.Exit(m.Run())
}

// busyboxApplets are linked into every test root's /bin.
var busyboxApplets = []string{
	"sh", "echo", "cat", "ls", "id", "touch", "mkdir", "rm", "hostname", "sleep",
	"env", "pwd", "mount", "grep", "wc", "kill", "stat", "true", "false", "readlink", "test", "cut", "tr", "chown", "mknod",
}

// makeRoot builds a root filesystem from the host's static busybox: /bin,
// /etc/passwd, /etc/group, /tmp and /work. It has no /proc, /dev or /sys:
// Run creates and removes those mount points.
func makeRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	populateRoot(t, root)
	return root
}

// populateRoot fills root the way makeRoot describes.
func populateRoot(t *testing.T, root string) {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skipf("no static busybox on this machine: %v", err)
	}
	for _, d := range []string{"bin", "etc", "tmp", "work"} {
		mustMkdir(t, filepath.Join(root, d))
	}
	if err := os.WriteFile(filepath.Join(root, "bin/busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range busyboxApplets {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(root, "etc/passwd"),
		"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n")
	writeFile(t, filepath.Join(root, "etc/group"),
		"root:x:0:\napp:x:1000:\nstaff:x:50:app,other\nwheel:x:10:root,app\nnogroup:x:65534:\n")
}

// requireChroot skips unless this machine lets Run use the chroot mode.
func requireChroot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("chroot isolation needs root")
	}
	if iso, why := Detect(); iso != Chroot {
		t.Skipf("chroot isolation unavailable: %s", why)
	}
}

func mustMkdir(t *testing.T, p string) {
	t.Helper()
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// mountinfo is this process's mount table without the ids that change
// between reads.
func mountinfo(t *testing.T) []string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines
}

// procsIn lists the pids whose root directory is root.
func procsIn(root string) []string {
	ents, _ := os.ReadDir("/proc")
	var pids []string
	for _, e := range ents {
		if strings.Trim(e.Name(), "0123456789") != "" {
			continue
		}
		if r, err := os.Readlink("/proc/" + e.Name() + "/root"); err == nil && r == root {
			pids = append(pids, e.Name())
		}
	}
	return pids
}

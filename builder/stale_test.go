package builder

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSweepStale: the work folder of a build that died (its lock free) is
// removed, with what is mounted in it; a live build's folder and a folder
// without a lock are left alone.
func TestSweepStale(t *testing.T) {
	dir := t.TempDir()
	mk := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Join(p, "rootfs-1"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	dead, live, unlocked := mk("kiln-build-dead"), mk("kiln-build-live"), mk("kiln-build-new")
	lock, err := lockWork(dead)
	if err != nil {
		t.Fatal(err)
	}
	lock.Close() // the build died: its lock is free
	liveLock, err := lockWork(live)
	if err != nil {
		t.Fatal(err)
	}
	defer liveLock.Close()
	mounted := false
	if os.Geteuid() == 0 {
		target := filepath.Join(dead, "rootfs-1")
		if err := unix.Mount("tmpfs", target, "tmpfs", 0, "mode=755"); err == nil {
			mounted = true
			t.Cleanup(func() { _ = unix.Unmount(target, unix.MNT_DETACH) })
		}
	}

	sweepStale(dir, slog.New(slog.DiscardHandler))

	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Errorf("the dead build's folder is still there (%v)", err)
	}
	for _, p := range []string{live, unlocked} {
		if _, err := os.Stat(filepath.Join(p, "rootfs-1")); err != nil {
			t.Errorf("%s was touched: %v", p, err)
		}
	}
	if mounted {
		info, _ := os.ReadFile("/proc/self/mountinfo")
		if strings.Contains(string(info), dead) {
			t.Errorf("the mount in the dead build's folder is still there")
		}
	}
}

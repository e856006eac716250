package snapshot

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// Supported tells whether this process can take Overlay snapshots, and why
// not. It mounts a tiny overlay in a temporary directory once per process
// and caches the answer: privilege and kernel do not change while it runs.
func Supported() (bool, string) { return probeOnce() }

var probeOnce = sync.OnceValues(probeOverlay)

func probeOverlay() (bool, string) {
	dir, err := os.MkdirTemp("", "kiln-overlay-probe-")
	if err != nil {
		return false, fmt.Sprintf("no temporary directory for the probe: %v", err)
	}
	defer os.RemoveAll(dir)
	var paths [4]string
	for i, n := range []string{"lower", "upper", "work", "merged"} {
		paths[i] = filepath.Join(dir, n)
		if err := os.Mkdir(paths[i], 0o755); err != nil {
			return false, fmt.Sprintf("preparing the probe: %v", err)
		}
	}
	if err := mountOverlay(paths[0], paths[1], paths[2], paths[3], mountOptions()); err != nil {
		return false, err.Error()
	}
	if err := unix.Unmount(paths[3], 0); err != nil {
		return false, fmt.Sprintf("unmounting the probe: %v", err)
	}
	return true, "overlay mounts in " + os.TempDir()
}

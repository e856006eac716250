package builder

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"kiln/builder/run"
)

// workLock, in a build's work folder, is locked by the build for as long as
// the folder is in use (until Result.Close). A folder whose lock is free
// belongs to a build that died (kill -9, OOM): sweepStale removes it, with
// the overlay a RUN step may have left mounted in it.
const workLock = ".kiln-build.lock"

// lockWork creates work's lock already held: it is locked under a temporary
// name and renamed into place, so a sweeper never finds it free.
func lockWork(work string) (*os.File, error) {
	tmp := filepath.Join(work, workLock+".tmp")
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("locking the work folder: %w", err)
	}
	// A filesystem without flock (some NFS setups) gets no lock: sweepers
	// cannot take it either, so they leave the folder alone.
	_ = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	if err := os.Rename(tmp, filepath.Join(work, workLock)); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking the work folder: %w", err)
	}
	return f, nil
}

// SweepStale removes the work folders of dead builds in dir: kiln-build-*
// folders, and those of kiln build-all's jobs (kiln-job-*/kiln-build-*),
// whose lock is free. Folders without a lock (being made, or from an older
// kiln) are left alone. Failures are logged, never returned: a sweep is
// housekeeping. Build sweeps its work folder's parent by itself.
func SweepStale(dir string, log *slog.Logger) { sweepStale(dir, log) }

func sweepStale(dir string, log *slog.Logger) {
	folders, _ := filepath.Glob(filepath.Join(dir, "kiln-build-*"))
	nested, _ := filepath.Glob(filepath.Join(dir, "kiln-job-*", "kiln-build-*"))
	folders = append(folders, nested...)
	for _, work := range folders {
		f, err := os.Open(filepath.Join(work, workLock))
		if err != nil {
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
			f.Close() // alive
			continue
		}
		err = removeStale(work)
		f.Close()
		if err != nil {
			log.Warn("removing the work folder of a build that died", "folder", work, "err", err)
			continue
		}
		log.Info("removed the work folder of a build that died", "folder", work)
	}
}

// removeStale unmounts what is mounted below work (deepest first, lazily)
// and removes it.
func removeStale(work string) error {
	mounts, err := run.ContainerMountPoints()
	if err != nil {
		return err
	}
	real, err := filepath.EvalSymlinks(work)
	if err != nil {
		return err
	}
	var below []string
	for _, m := range mounts {
		if strings.HasPrefix(m, real+"/") {
			below = append(below, m)
		}
	}
	slices.SortFunc(below, func(a, b string) int { return len(b) - len(a) })
	for _, m := range below {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("unmounting %s: %w", m, err)
		}
	}
	return os.RemoveAll(work)
}

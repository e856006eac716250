package manifest

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Temporary files, and when one that is not ours may be removed.
//
// Every write into a layout goes through a file named ".tmp-…" beside its
// destination (blobs/sha256 for blobs, the layout folder for index.json and
// oci-layout, .kiln for kiln's own records) that is renamed into place once whole. A killed writer leaves
// its file behind, and on a small volume such leftovers fill the disk, so
// they must be removed as soon as their writer is gone; but many warmers and
// builds share one cache, and a temp file must never vanish under a live
// writer. The rule:
//
//   - A writer holds an exclusive flock on its temp file from just after
//     creating it until after the rename or removal; it renames or removes
//     the file before closing it, so the lock covers the name for as long
//     as the name exists.
//   - Creating and locking happen under .kiln/temps.lock held shared; a
//     sweep holds it exclusive. So while a sweep runs, no writer is between
//     creating its file and locking it, and every temp file is either
//     locked by a live writer or its writer is gone.
//   - A sweeper removes a temp file only while it holds a non-blocking
//     exclusive flock on it, taken on a descriptor of its own, and only if
//     the path still names the file it locked. The kernel drops a process's
//     flocks when it dies, kill -9 included, so a lock that can be taken is
//     a dead writer's file.
//   - Neither side waits long for temps.lock (a stopped process may hold
//     it). A sweep without it leaves empty unlocked files alone until they
//     are emptyTempGrace old: a writer has written nothing before it holds
//     its lock, and an empty file takes no room. A writer without it checks,
//     once it holds its file's lock, that the path still names its file,
//     and starts over with a new one if a sweep removed it.
//
// This relies on flock locks belonging to the open file description, not to
// the process: a sweeper's own open(2) conflicts even with a writer in the
// same process, and closing one descriptor does not drop a lock held through
// another (POSIX fcntl locks do neither, which is why they are not used).
// Files are opened close-on-exec, so no child process inherits a writer's
// lock and keeps a dead writer's file alive. On NFS, Linux emulates flock
// with POSIX locks: the rule holds between machines and processes (as the
// use lock does, see fileLock), but not between a writer and a sweeper in
// one process; kiln sweeps at the start of a warm, before its own writes.

const (
	tempsLockFile = "temps.lock"
	// tempsLockWait bounds the wait for temps.lock, on either side.
	tempsLockWait = 2 * time.Second
	// emptyTempGrace is how long a sweep without temps.lock takes an empty
	// unlocked temp file for a writer that has not locked it yet.
	emptyTempGrace = 10 * time.Minute
)

// holdTempsLock takes root's temps.lock, shared for a writer or exclusive
// for a sweep, waiting at most tempsLockWait. held is false if it could not
// be had (no .kiln folder, or another process holds it that long).
func holdTempsLock(root string, exclusive bool) (release func(), held bool) {
	ctx, cancel := context.WithTimeout(context.Background(), tempsLockWait)
	defer cancel()
	lock, err := lockFile(ctx, filepath.Join(root, kilnDir, tempsLockFile), exclusive, nil)
	if err != nil {
		return func() {}, false
	}
	return func() { lock.unlock() }, true
}

// createTemp creates and locks a temporary file in dir, a folder of the
// layout at root, for a write. The file is read-only (blobMode) from the
// start: its writer writes through the descriptor it was created with, and
// any sweeper, whoever runs it, may open it to test the writer's lock.
func createTemp(root, dir, pattern string) (*os.File, error) {
	release, _ := holdTempsLock(root, false)
	defer release()
	for attempt := 1; ; attempt++ {
		f, err := os.CreateTemp(dir, pattern)
		if err != nil {
			return nil, err
		}
		if err := f.Chmod(blobMode); err != nil {
			f.Close()
			os.Remove(f.Name())
			return nil, err
		}
		swept, err := lockOwnTemp(f)
		if err == nil && !swept {
			return f, nil
		}
		f.Close()
		if err != nil {
			os.Remove(f.Name())
			return nil, err
		}
		if attempt == 3 {
			return nil, fmt.Errorf("creating a temp file in %s: removed by another process %d times", dir, attempt)
		}
	}
}

// lockOwnTemp takes the writer's lock on a file this process just created.
// swept reports that a sweeper removed the file before the lock was taken.
func lockOwnTemp(f *os.File) (swept bool, err error) {
	if err := flockRetry(f, unix.LOCK_EX); err != nil {
		if unsupportedLock(err) {
			// A filesystem without locks: sweepers cannot lock the file
			// either, so they leave it alone.
			return false, nil
		}
		return false, fmt.Errorf("locking %s: %w", f.Name(), err)
	}
	same, err := namesFile(f)
	return !same, err
}

// flockRetry is flock(2) retried after EINTR.
func flockRetry(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

func unsupportedLock(err error) bool {
	return errors.Is(err, unix.ENOLCK) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS)
}

// namesFile reports whether f's path still names f.
func namesFile(f *os.File) (bool, error) {
	fi, err := f.Stat()
	if err != nil {
		return false, err
	}
	pi, err := os.Lstat(f.Name())
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return os.SameFile(fi, pi), nil
}

// TempFile is a temporary file of a write into a layout.
type TempFile struct {
	Path string
	Size int64
	// Live: a running process holds the file's lock and is writing it (or
	// the lock could not be tried, and the file is left alone as if it did).
	Live bool
}

// TempFiles lists the layout's temporary files, telling live writes from
// the leftovers of killed ones. It removes nothing.
func (l *Layout) TempFiles() ([]TempFile, error) {
	return l.sweepTemps(false)
}

// RemoveDeadTemps removes the temporary files no live process is writing,
// the leftovers of killed writes, and returns them; live writes are left
// alone (see the rule above). Safe beside any number of writers.
func (l *Layout) RemoveDeadTemps() ([]TempFile, error) {
	all, err := l.sweepTemps(true)
	removed := all[:0]
	for _, t := range all {
		if !t.Live {
			removed = append(removed, t)
		}
	}
	return removed, err
}

// sweepTemps probes every temp file, removing the dead ones if remove is set.
func (l *Layout) sweepTemps(remove bool) ([]TempFile, error) {
	release, exact := holdTempsLock(l.dir, true)
	defer release()
	var out []TempFile
	for _, dir := range []string{l.dir, filepath.Join(l.dir, "blobs", "sha256"), filepath.Join(l.dir, kilnDir)} {
		entries, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return out, fmt.Errorf("listing temp files: %w", err)
		}
		for _, e := range entries {
			if !strings.HasPrefix(e.Name(), tmpPrefix) || !e.Type().IsRegular() {
				continue
			}
			t, ok, err := probeTemp(filepath.Join(dir, e.Name()), remove, exact)
			if err != nil {
				return out, err
			}
			if ok {
				out = append(out, t)
			}
		}
	}
	return out, nil
}

// probeTemp tries to take path's writer lock: if it can, the writer is
// gone, and with remove set the file is removed under the lock. exact says
// the caller holds temps.lock, so that no writer is between creating its
// file and locking it. ok is false when the file went away meanwhile
// (committed or aborted).
func probeTemp(path string, remove, exact bool) (t TempFile, ok bool, err error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return t, false, nil
	}
	if err != nil {
		// Unreadable: nothing can be told about its writer, so keep it.
		return TempFile{Path: path, Live: true}, true, nil
	}
	defer f.Close() // last: the lock covers the removal
	t = TempFile{Path: path, Live: true}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		// EWOULDBLOCK: a live writer. Anything else: cannot tell, so keep it.
		if fi, err := f.Stat(); err == nil {
			t.Size = fi.Size()
		}
		return t, true, nil
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return t, false, nil
	}
	if same, err := namesFile(f); err != nil || !same {
		return t, false, nil // renamed into place or removed meanwhile
	}
	t.Size = fi.Size()
	if !exact && fi.Size() == 0 && time.Since(fi.ModTime()) < emptyTempGrace {
		return t, true, nil // maybe a writer between creating and locking it
	}
	t.Live = false
	if remove {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return t, false, fmt.Errorf("removing leftover temp file: %w", err)
		}
	}
	return t, true, nil
}

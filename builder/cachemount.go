package builder

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"golang.org/x/sys/unix"

	"kiln/manifest"
)

// cacheMountDir is the persistent folder of a cache mount, kept across
// builds under the run-cache folder, never in a layer. Its id (default: the
// target) names it. It is held for the step as its sharing mode says, as
// BuildKit does: shared (the default) by any number of steps at once,
// locked by one step at a time (others wait), private by one step, a
// second one at the same time getting a folder of its own. release lets it
// go after the step.
//
// A builder that may not write to the shared run-cache folder (a non-root
// build on a cache a root warmer made, or mounted read-only) gets a folder
// of its own in the build's work folder instead, empty at the start and
// gone after the build: the step runs without what earlier builds cached,
// never fails for it.
func (b *builder) cacheMountDir(ctx context.Context, m *instructions.Mount) (dir string, release func(), err error) {
	if b.o.runCache == "" {
		return "", nil, fmt.Errorf("RUN --mount=type=cache needs a cache folder (--cache-dir)")
	}
	id := cacheKey(m)
	sum := sha256.Sum256([]byte(id))
	name := hex.EncodeToString(sum[:8])
	waiting := func() {
		b.o.log.Info("RUN --mount=type=cache: waiting for another build's step to release it (sharing=locked)", "id", id)
	}
	dir, release, err = holdWritableCacheDir(ctx, b.o.runCache, name, m.CacheSharing, waiting)
	if err != nil && notWritable(err) {
		own := filepath.Join(b.work, "run-cache")
		b.o.log.Warn("RUN --mount=type=cache: the shared cache folder is not writable by this user; "+
			"this build uses a folder of its own, not kept after it", "id", id, "shared", b.o.runCache, "uid", os.Geteuid(), "why", err.Error(), "folder", own)
		dir, release, err = holdWritableCacheDir(ctx, own, name, m.CacheSharing, waiting)
	}
	if err != nil {
		return "", nil, fmt.Errorf("cache mount %s: %w", id, err)
	}
	if err := setCacheDirOwner(dir, m); err != nil {
		release()
		return "", nil, fmt.Errorf("cache mount %s: %w", id, err)
	}
	return dir, release, nil
}

// cacheKey is a cache mount's id: its id=, else its target.
func cacheKey(m *instructions.Mount) string {
	if m.CacheID != "" {
		return m.CacheID
	}
	return m.Target
}

// holdWritableCacheDir holds root/name (holdCacheDir) and checks that this
// process may write to it.
func holdWritableCacheDir(ctx context.Context, root, name string, sharing instructions.ShareMode, waiting func()) (string, func(), error) {
	if err := manifest.MkdirShared(root); err != nil {
		return "", nil, err
	}
	dir, release, err := holdCacheDir(ctx, filepath.Join(root, name), sharing, waiting)
	if err != nil {
		return "", nil, err
	}
	if err := unix.Access(dir, unix.W_OK|unix.X_OK); err != nil {
		release()
		return "", nil, &os.PathError{Op: "access", Path: dir, Err: err}
	}
	return dir, release, nil
}

// notWritable: err says a folder may not be created or written here.
func notWritable(err error) bool {
	return errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS)
}

// holdCacheDir creates and locks the cache folder base (or, for a private
// mount whose base is busy, the first free base-N) through the lock file
// next to it.
func holdCacheDir(ctx context.Context, base string, sharing instructions.ShareMode, waiting func()) (string, func(), error) {
	hold := func(dir string, unlock func() error) (string, func(), error) {
		if err := manifest.MkdirShared(dir); err != nil {
			_ = unlock()
			return "", nil, err
		}
		return dir, func() { _ = unlock() }, nil
	}
	switch sharing {
	case instructions.MountSharingShared, "":
		unlock, err := manifest.LockFile(ctx, base+".lock", false, nil)
		if err != nil {
			return "", nil, err
		}
		return hold(base, unlock)
	case instructions.MountSharingLocked:
		unlock, err := manifest.LockFile(ctx, base+".lock", true, waiting)
		if err != nil {
			return "", nil, err
		}
		return hold(base, unlock)
	case instructions.MountSharingPrivate:
		for i := 0; ; i++ {
			dir := base
			if i > 0 {
				dir = fmt.Sprintf("%s-%d", base, i)
			}
			unlock, err := tryLock(dir + ".lock")
			if err != nil {
				return "", nil, err
			}
			if unlock != nil {
				return hold(dir, unlock)
			}
			if err := ctx.Err(); err != nil {
				return "", nil, err
			}
		}
	}
	return "", nil, fmt.Errorf("%w: cache sharing %q", ErrNotSupported, sharing)
}

// tryLock takes an exclusive flock on path if it is free at once; a nil
// unlock and no error mean it is not.
func tryLock(path string) (unlock func() error, err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, nil
		}
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	return f.Close, nil // closing the file drops its lock
}

// setCacheDirOwner gives the folder the uid, gid and mode the mount asks for.
func setCacheDirOwner(dir string, m *instructions.Mount) error {
	if m.UID != nil || m.GID != nil {
		uid, gid := -1, -1
		if m.UID != nil {
			uid = int(*m.UID)
		}
		if m.GID != nil {
			gid = int(*m.GID)
		}
		if err := os.Lchown(dir, uid, gid); err != nil {
			return err
		}
	}
	if m.Mode != nil {
		return os.Chmod(dir, os.FileMode(*m.Mode)&os.ModePerm)
	}
	return nil
}

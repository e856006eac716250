package manifest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
)

// hashBufferSize is the read size when a blob is only hashed: large reads
// keep the syscalls few next to SHA-256.
const hashBufferSize = 1 << 20

// linkVerified stores blob h as a hard link to f, another layout's
// committed blob (a warm cache's) that vr, f's verifying reader, checks:
// an output layout on the cache's filesystem then costs a hash of the
// blob, not a copy and two hashes. The whole blob is read through vr
// first, so a damaged blob fails here as a copy of it would, and nothing
// is linked; the link is made to the inode that was read (through
// /proc/self/fd), not to whatever the path names by then. The caller
// checked that f is linkable; a link refused all the same (no /proc, a
// filesystem without hard links) returns false with no error, and the
// caller copies.
func (l *Layout) linkVerified(ctx context.Context, h v1.Hash, vr *verifyReader, f *os.File) (bool, error) {
	if err := drain(ctx, vr); err != nil {
		return false, err
	}
	return l.link(h, f)
}

// link makes f, a checked blob, blob h of the layout: false if the link is
// refused. f's data is synced first, as a blob written here would be.
func (l *Layout) link(h v1.Hash, f *os.File) (bool, error) {
	final := l.BlobPath(h)
	if err := f.Sync(); err != nil {
		return false, noSpace(l.dir, "blob "+h.String(), err)
	}
	err := unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(int(f.Fd())), unix.AT_FDCWD, final, unix.AT_SYMLINK_FOLLOW)
	switch {
	case errors.Is(err, unix.EEXIST):
		return true, nil // committed meanwhile by another writer
	case err != nil:
		return false, nil
	}
	if err := syncDir(filepath.Dir(final)); err != nil {
		return true, noSpace(l.dir, "blob "+h.String(), err)
	}
	return true, nil
}

// linkable says whether f may be hard-linked into folder dir in place of a
// copy: a read-only regular file (as committed blobs are) of this user on
// dir's filesystem, so that the linked blob is what a copy would have
// made but for sharing the other layout's inode.
func linkable(f *os.File, dir string) bool {
	var src, dst unix.Stat_t
	if unix.Fstat(int(f.Fd()), &src) != nil || unix.Stat(dir, &dst) != nil {
		return false
	}
	return src.Mode&unix.S_IFMT == unix.S_IFREG && src.Mode&0o222 == 0 &&
		int(src.Uid) == os.Geteuid() && src.Dev == dst.Dev
}

// putChecked stores blob h from f, a file this process checked against h
// already (KeepBlobs): linked where linkable, else copied, without hashing
// it again.
func (l *Layout) putChecked(ctx context.Context, h v1.Hash, size int64, f *os.File) error {
	if linkable(f, filepath.Dir(l.BlobPath(h))) {
		if ok, err := l.link(h, f); ok || err != nil {
			return err
		}
	}
	w, err := l.NewBlobWriter(h, size)
	if err != nil {
		return err
	}
	w.h = nil
	_, err = w.copyFrom(ctx, f)
	return err
}

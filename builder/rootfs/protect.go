package rootfs

import (
	"context"
	"errors"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// WithProtected names container paths ("/proc", "/etc/hosts", "/kiln") that
// the Root never writes, replaces or deletes: a root that is a live
// container's own "/" keeps its mount points and the builder's own files.
// Layer entries at or below a protected path are skipped with a warning, an
// entry that would replace a folder holding one with a non-folder is
// skipped too, and whiteouts, opaque markers and Clear remove everything
// around them but not them.
func WithProtected(paths ...string) Option {
	return func(r *Root) {
		if r.protected == nil {
			r.protected = map[string]bool{}
		}
		for _, p := range paths {
			if rel := strings.TrimPrefix(path.Clean("/"+p), "/"); rel != "" {
				r.protected[rel] = true
			}
		}
	}
}

// isProtected tells whether rel (relative, clean) is a protected path or
// lies below one.
func (r *Root) isProtected(rel string) bool {
	for p := range r.protected {
		if rel == p || strings.HasPrefix(rel, p+"/") {
			return true
		}
	}
	return false
}

// holdsProtected tells whether a protected path lies strictly below rel
// ("" is the root).
func (r *Root) holdsProtected(rel string) bool {
	for p := range r.protected {
		if rel == "" || strings.HasPrefix(p, rel+"/") {
			return true
		}
	}
	return false
}

// removeAt removes name (at rel) from the directory dir, keeping protected
// paths: a folder that holds one is emptied around it instead.
func (r *Root) removeAt(dir int, name, rel string) error {
	switch {
	case len(r.protected) == 0:
		return removeAllAt(dir, name, "/"+rel)
	case r.isProtected(rel):
		return nil
	case r.holdsProtected(rel):
		fd, err := unix.Openat(dir, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
			return removeAllAt(dir, name, "/"+rel) // not a folder: nothing protected can be inside
		}
		if err != nil {
			return &os.PathError{Op: "open", Path: "/" + rel, Err: err}
		}
		defer unix.Close(fd)
		return r.emptyAround(context.Background(), fd, rel)
	}
	return removeAllAt(dir, name, "/"+rel)
}

// emptyAround removes everything in the directory dir (at rel) but the
// protected paths and the folders leading to them.
func (r *Root) emptyAround(ctx context.Context, dir int, rel string) error {
	names, err := readDirNames(dir, "/"+rel)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := r.removeAt(dir, n, path.Join(rel, n)); err != nil {
			return err
		}
	}
	return nil
}

// Clear removes everything in the root but its protected paths and the
// folders leading to them: what replacing a live container's "/" with
// another image starts with.
func (r *Root) Clear(ctx context.Context) error {
	fd, err := r.openRoot()
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return r.emptyAround(ctx, fd, "")
}

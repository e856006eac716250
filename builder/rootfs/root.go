package rootfs

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Root is a directory that holds an unpacked root filesystem. All path
// operations go through it and are confined to it. Resolve may be called
// concurrently; ApplyLayer and Unpack must not run concurrently with anything
// else on the same directory.
type Root struct {
	dir        string
	privileged bool
	protected  map[string]bool // relative paths never written or removed (WithProtected)
	noOpenat2  bool            // KILN_NO_OPENAT2 set: every lookup walks (see Open)
}

// Option configures a Root.
type Option func(*Root)

// WithPrivileged overrides what Open detects (the effective user is root):
// false makes a Root behave as an unprivileged user would (no ownership, no
// device nodes, no trusted.*/security.* xattrs) even when it could do more,
// as rootless builds and tests want.
func WithPrivileged(privileged bool) Option {
	return func(r *Root) { r.privileged = privileged }
}

// Open returns the Root for dir, which must exist and be a directory. The
// path to dir itself is trusted: it is made absolute and its symlinks are
// resolved once, so that Resolve returns canonical paths.
//
// KILN_NO_OPENAT2=1 in the environment makes the Root find folders by its
// own walk only, as on a kernel without openat2 (older than 5.6, or one
// that a seccomp profile hides it from): for tests and for ruling openat2
// out when something goes wrong.
func Open(dir string, opts ...Option) (*Root, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("opening root %s: %w", dir, err)
	}
	if abs, err = filepath.EvalSymlinks(abs); err != nil {
		return nil, fmt.Errorf("opening root %s: %w", dir, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("opening root %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("opening root %s: %w", dir, unix.ENOTDIR)
	}
	r := &Root{dir: abs, privileged: os.Geteuid() == 0, noOpenat2: noOpenat2()}
	for _, opt := range opts {
		opt(r)
	}
	return r, nil
}

func noOpenat2() bool {
	v := os.Getenv("KILN_NO_OPENAT2")
	return v != "" && v != "0"
}

// Dir returns the absolute host path of the root directory.
func (r *Root) Dir() string { return r.dir }

// openRoot returns a descriptor every walk starts from; the caller closes it.
func (r *Root) openRoot() (int, error) {
	fd, err := unix.Open(r.dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: r.dir, Err: err}
	}
	return fd, nil
}

// hostPath is the host path of name inside the directory rel (resolved,
// relative to the root). Only for calls that have no *at form (lsetxattr):
// every directory on the way was checked not to be a symlink, which holds
// while nothing else writes the root.
func (r *Root) hostPath(rel, name string) string {
	return filepath.Join(r.dir, filepath.FromSlash(rel), name)
}

package rootfs

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"

	"golang.org/x/sys/unix"
)

// create makes the entry hdr names as name in the directory c leads to,
// then gives it the entry's metadata.
func (a *applier) create(ctx context.Context, c *chain, name string, hdr *tar.Header, body io.Reader) error {
	if rel := c.join(name); a.root.isProtected(rel) || (hdr.Typeflag != tar.TypeDir && a.root.holdsProtected(rel)) {
		a.stats.warn("/%s left alone: a protected path, or a folder holding one (a mount point or the builder's own)", rel)
		return nil
	}
	if err := a.replace(c, name, hdr.Typeflag == tar.TypeDir); err != nil {
		return err
	}
	made, err := a.createObject(ctx, c, name, hdr, body)
	if err != nil || !made {
		return err
	}
	a.markUnpacked(c, name)
	return a.setMetadata(c, name, hdr)
}

// replace removes what holds name unless both it and the entry are
// directories, which merge. A symlink is removed, never followed.
func (a *applier) replace(c *chain, name string, isDir bool) error {
	var st unix.Stat_t
	err := unix.Fstatat(c.fd(), name, &st, unix.AT_SYMLINK_NOFOLLOW)
	switch {
	case errors.Is(err, unix.ENOENT):
		return nil
	case err != nil:
		return &os.PathError{Op: "lstat", Path: "/" + c.join(name), Err: err}
	case isDir && st.Mode&unix.S_IFMT == unix.S_IFDIR:
		return nil
	}
	return a.root.removeAt(c.fd(), name, c.join(name))
}

// createObject creates the entry's object; made is false when it was skipped.
func (a *applier) createObject(ctx context.Context, c *chain, name string, hdr *tar.Header, body io.Reader) (made bool, err error) {
	switch hdr.Typeflag {
	case tar.TypeDir:
		return true, a.mkdir(c, name)
	case tar.TypeReg, '\x00', tar.TypeGNUSparse: // '\x00': TypeRegA, from old tars
		return true, a.writeFile(ctx, c, name, body)
	case tar.TypeSymlink:
		a.stats.Symlinks++
		return true, pathErr("symlink", c, name, unix.Symlinkat(hdr.Linkname, c.fd(), name))
	case tar.TypeLink:
		return true, a.hardlink(c, name, hdr.Linkname)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return a.mknod(c, name, hdr)
	}
	return false, fmt.Errorf("%w: entry type %q is not supported", ErrInvalidLayer, hdr.Typeflag)
}

// mkdir makes a directory writable by its owner; its mode comes with the
// fixups at the end of the layer.
func (a *applier) mkdir(c *chain, name string) error {
	a.stats.Dirs++
	err := unix.Mkdirat(c.fd(), name, 0o700)
	if errors.Is(err, unix.EEXIST) {
		return nil // merged into a directory a lower layer made
	}
	return pathErr("mkdir", c, name, err)
}

// writeFile streams body into a new file. O_EXCL|O_NOFOLLOW: the name was
// just cleared, and nothing planted since is ever opened.
func (a *applier) writeFile(ctx context.Context, c *chain, name string, body io.Reader) error {
	fd, err := unix.Openat(c.fd(), name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return pathErr("create", c, name, err)
	}
	f := os.NewFile(uintptr(fd), "/"+c.join(name))
	n, err := a.copyContent(ctx, f, body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		// A short or failed file must not look like a whole one.
		_ = unix.Unlinkat(c.fd(), name, 0)
		return fmt.Errorf("writing %s: %w", f.Name(), err)
	}
	a.stats.Files++
	a.stats.Bytes += n
	return nil
}

// hardlink links name to target, another entry inside the root. Like
// containerd, the target's directory is resolved inside the root and its
// last component is not followed (a link to a symlink is a symlink).
func (a *applier) hardlink(c *chain, name, target string) error {
	rel := a.cleanName(target, "hardlink target")
	if rel == "" {
		return fmt.Errorf("%w: hardlink to the root", ErrInvalidLayer)
	}
	dir, base := path.Split(rel)
	w := &walker{root: a.rootFD, mode: walkMode{followLast: true, enterLast: true}}
	tc, _, err := w.walk(dir)
	if err != nil {
		return fmt.Errorf("hardlink target %s: %w", target, err)
	}
	defer tc.close()
	if tc.fd() < 0 {
		return &os.PathError{Op: "link", Path: "/" + rel, Err: unix.ENOENT}
	}
	if err := unix.Linkat(tc.fd(), base, c.fd(), name, 0); err != nil {
		return &os.LinkError{Op: "link", Old: "/" + tc.join(base), New: "/" + c.join(name), Err: err}
	}
	a.stats.Hardlinks++
	return nil
}

// mknod makes a device or fifo, or skips it with a warning when this
// process may not: a layer of a base image must not fail for /dev/console.
func (a *applier) mknod(c *chain, name string, hdr *tar.Header) (bool, error) {
	kind := uint32(unix.S_IFIFO)
	switch hdr.Typeflag {
	case tar.TypeChar:
		kind = unix.S_IFCHR
	case tar.TypeBlock:
		kind = unix.S_IFBLK
	}
	if kind != unix.S_IFIFO && !a.root.privileged {
		a.stats.warn("device /%s not created: not running as root", c.join(name))
		return false, nil
	}
	dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
	err := unix.Mknodat(c.fd(), name, kind|0o600, int(dev))
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		a.stats.warn("device /%s not created: %v", c.join(name), err)
		return false, nil
	}
	if err != nil {
		return false, pathErr("mknod", c, name, err)
	}
	a.stats.Devices++
	return true, nil
}

// pathErr wraps err, if any, with the container path of name.
func pathErr(op string, c *chain, name string, err error) error {
	if err == nil {
		return nil
	}
	return &os.PathError{Op: op, Path: "/" + c.join(name), Err: err}
}

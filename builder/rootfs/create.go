package rootfs

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// create makes the entry hdr names as name in the folder d, then gives it
// the entry's metadata.
func (a *applier) create(ctx context.Context, d dirRef, name string, hdr *tar.Header, body io.Reader) error {
	if rel := d.join(name); a.root.isProtected(rel) || (hdr.Typeflag != tar.TypeDir && a.root.holdsProtected(rel)) {
		a.stats.warn("/%s left alone: a protected path, or a folder holding one (a mount point or the builder's own)", rel)
		return nil
	}
	if isRegular(hdr.Typeflag) {
		return a.writeFile(ctx, d, name, hdr, body)
	}
	made, err := a.createObject(d, name, hdr)
	if err != nil || !made {
		return err
	}
	a.markUnpacked(d, name)
	return a.setMetadata(node{d: d, name: name, fd: -1}, hdr)
}

// isRegular tells the entry types that are regular files ('\x00': TypeRegA,
// from old tars).
func isRegular(typ byte) bool {
	return typ == tar.TypeReg || typ == '\x00' || typ == tar.TypeGNUSparse
}

// makeAt runs mk, which creates name in d and fails with EEXIST when the
// name is taken: then what holds it is replaced (see replace) and mk runs
// once more. Creating first costs nothing more in the common case, a name
// no lower layer used. mk's error is reported as op on the entry's path.
func (a *applier) makeAt(op string, d dirRef, name string, isDir bool, mk func() error) error {
	err := mk()
	if errors.Is(err, unix.EEXIST) {
		var merged bool
		if merged, err = a.replace(d, name, isDir); err != nil || merged {
			return err
		}
		err = mk()
	}
	return pathErr(op, d, name, err)
}

// replace removes what holds name unless both it and the entry are
// directories, which merge (merged is true). A symlink is removed, never
// followed.
func (a *applier) replace(d dirRef, name string, isDir bool) (merged bool, err error) {
	var st unix.Stat_t
	err = unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	switch {
	case errors.Is(err, unix.ENOENT):
		return false, nil
	case err != nil:
		return false, pathErr("lstat", d, name, err)
	case isDir && st.Mode&unix.S_IFMT == unix.S_IFDIR:
		return true, nil
	}
	if t := st.Mode & unix.S_IFMT; t == unix.S_IFDIR || t == unix.S_IFLNK {
		a.dirs.forget() // cached paths may lead through it
	}
	return false, a.root.removeAt(d.fd, name, d.join(name))
}

// createObject creates an entry's object other than a regular file; made
// is false when it was skipped.
func (a *applier) createObject(d dirRef, name string, hdr *tar.Header) (made bool, err error) {
	switch hdr.Typeflag {
	case tar.TypeDir:
		// Writable by its owner; its mode comes with the fixups at the end
		// of the layer. Onto a directory a lower layer made, it merges.
		a.stats.Dirs++
		return true, a.makeAt("mkdir", d, name, true, func() error { return unix.Mkdirat(d.fd, name, 0o700) })
	case tar.TypeSymlink:
		a.stats.Symlinks++
		return true, a.makeAt("symlink", d, name, false, func() error { return unix.Symlinkat(hdr.Linkname, d.fd, name) })
	case tar.TypeLink:
		return true, a.hardlink(d, name, hdr.Linkname)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return a.mknod(d, name, hdr)
	}
	return false, fmt.Errorf("%w: entry type %q is not supported", ErrInvalidLayer, hdr.Typeflag)
}

// writeFile streams body into a new file and gives it the entry's metadata
// through its descriptor. O_EXCL|O_NOFOLLOW: nothing that held the name,
// or was planted there since, is ever opened.
func (a *applier) writeFile(ctx context.Context, d dirRef, name string, hdr *tar.Header, body io.Reader) error {
	fd := -1
	err := a.makeAt("create", d, name, false, func() (err error) {
		fd, err = unix.Openat(d.fd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		return err
	})
	if err != nil {
		return err
	}
	n, err := a.copyContent(ctx, fd, body)
	var merr error
	if err == nil {
		merr = a.setMetadata(node{d: d, name: name, fd: fd}, hdr)
	}
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	if err != nil {
		// A short or failed file must not look like a whole one.
		_ = unix.Unlinkat(d.fd, name, 0)
		return fmt.Errorf("writing /%s: %w", d.join(name), err)
	}
	a.stats.Files++
	a.stats.Bytes += n
	a.markUnpacked(d, name)
	return merr
}

// hardlink links name to target, another entry inside the root. Like
// containerd, the target's directory is resolved inside the root and its
// last component is not followed (a link to a symlink is a symlink). When
// name is taken, the target is looked up again once it is replaced: the
// replaced object may have been on the target's way.
func (a *applier) hardlink(d dirRef, name, target string) error {
	rel := a.cleanName(target, "hardlink target")
	if rel == "" {
		return fmt.Errorf("%w: hardlink to the root", ErrInvalidLayer)
	}
	dir, base := splitRel(rel)
	link := func() error {
		td, ok, err := a.dir(dir, dirLookup)
		if err != nil {
			return fmt.Errorf("hardlink target %s: %w", target, err)
		}
		if !ok {
			return &os.PathError{Op: "link", Path: "/" + rel, Err: unix.ENOENT}
		}
		if err := unix.Linkat(td.fd, base, d.fd, name, 0); err != nil {
			return &os.LinkError{Op: "link", Old: "/" + td.join(base), New: "/" + d.join(name), Err: err}
		}
		return nil
	}
	err := link()
	if errors.Is(err, unix.EEXIST) {
		if _, err := a.replace(d, name, false); err != nil {
			return err
		}
		err = link()
	}
	if err != nil {
		return err
	}
	a.stats.Hardlinks++
	return nil
}

// mknod makes a device or fifo, or skips it with a warning when this
// process may not: a layer of a base image must not fail for /dev/console.
// What held the name goes either way.
func (a *applier) mknod(d dirRef, name string, hdr *tar.Header) (bool, error) {
	kind := uint32(unix.S_IFIFO)
	switch hdr.Typeflag {
	case tar.TypeChar:
		kind = unix.S_IFCHR
	case tar.TypeBlock:
		kind = unix.S_IFBLK
	}
	if kind != unix.S_IFIFO && !a.root.privileged {
		if _, err := a.replace(d, name, false); err != nil {
			return false, err
		}
		a.stats.warn("device /%s not created: not running as root", d.join(name))
		return false, nil
	}
	dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
	err := a.makeAt("mknod", d, name, false, func() error { return unix.Mknodat(d.fd, name, kind|0o600, int(dev)) })
	if pe := (*os.PathError)(nil); errors.As(err, &pe) && pe.Op == "mknod" && (pe.Err == unix.EPERM || pe.Err == unix.EACCES) {
		a.stats.warn("device /%s not created: %v", d.join(name), pe.Err)
		return false, nil
	}
	if err != nil {
		return false, err
	}
	a.stats.Devices++
	return true, nil
}

// pathErr wraps err, if any, with the container path of name.
func pathErr(op string, d dirRef, name string, err error) error {
	if err == nil {
		return nil
	}
	var pe *os.PathError
	if errors.As(err, &pe) {
		return err // already names a path
	}
	return &os.PathError{Op: op, Path: "/" + d.join(name), Err: err}
}

package rootfs

import (
	"archive/tar"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// xattrRecord prefixes the PAX records that carry extended attributes.
const xattrRecord = "SCHILY.xattr."

// node is what an entry's metadata is given to: name in the folder d,
// never followed, or, when fd is not -1, the regular file just written
// there, through its descriptor (no lookup at all).
type node struct {
	d    dirRef
	name string
	fd   int
}

func (n node) rel() string { return n.d.join(n.name) }

func (n node) chown(uid, gid int) error {
	if n.fd >= 0 {
		return unix.Fchown(n.fd, uid, gid)
	}
	return unix.Fchownat(n.d.fd, n.name, uid, gid, unix.AT_SYMLINK_NOFOLLOW)
}

func (n node) setxattr(r *Root, attr string, value []byte) error {
	if n.fd >= 0 {
		return unix.Fsetxattr(n.fd, attr, value, 0)
	}
	return unix.Lsetxattr(r.hostPath(n.d.rel, n.name), attr, value, 0)
}

func (n node) chmod(mode uint32) error {
	if n.fd >= 0 {
		return unix.Fchmod(n.fd, mode)
	}
	return unix.Fchmodat(n.d.fd, n.name, mode, 0)
}

func (n node) utimes(times *[2]unix.Timespec) error {
	if n.fd >= 0 {
		return futimens(n.fd, times)
	}
	return unix.UtimesNanoAt(n.d.fd, n.name, times[:], unix.AT_SYMLINK_NOFOLLOW)
}

// futimens sets the times of the file open as fd: utimensat with no path,
// which x/sys/unix has no wrapper for (its Futimes goes through /proc).
func futimens(fd int, times *[2]unix.Timespec) error {
	_, _, errno := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(times)), 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// setMetadata gives n the entry's owner, xattrs, mode and times, in the
// order that keeps each: chown clears setuid and file capabilities, so it
// goes first. A directory's mode and times wait for the end of the layer.
func (a *applier) setMetadata(n node, hdr *tar.Header) error {
	if err := a.chown(n, hdr); err != nil {
		return err
	}
	if err := a.setXattrs(n, hdr); err != nil {
		return err
	}
	mode := uint32(hdr.Mode) & 0o7777
	times, err := entryTimes(hdr)
	if err != nil {
		return pathErr("utimes", n.d, n.name, err)
	}
	if hdr.Typeflag == tar.TypeDir {
		a.fixups.dir(n.rel(), mode, times)
		return nil
	}
	if err := a.chmod(n, hdr.Typeflag, mode); err != nil {
		return err
	}
	return pathErr("utimes", n.d, n.name, n.utimes(&times))
}

// chown applies the entry's owner, or records it when ownership is off or
// the ID is not mapped in this user namespace.
func (a *applier) chown(n node, hdr *tar.Header) error {
	owner := Owner{UID: hdr.Uid, GID: hdr.Gid}
	if !a.cfg.chown {
		a.stats.skipOwner(n.rel(), owner)
		return nil
	}
	err := n.chown(hdr.Uid, hdr.Gid)
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EINVAL) {
		a.stats.warn("owner %d:%d of /%s not applied: %v", hdr.Uid, hdr.Gid, n.rel(), err)
		a.stats.skipOwner(n.rel(), owner)
		return nil
	}
	return pathErr("chown", n.d, n.name, err)
}

// setXattrs sets the entry's SCHILY.xattr.* records, best effort: what the
// filesystem or this process cannot hold is skipped with a warning.
func (a *applier) setXattrs(n node, hdr *tar.Header) error {
	if len(hdr.PAXRecords) == 0 {
		return nil
	}
	for _, key := range slices.Sorted(maps.Keys(hdr.PAXRecords)) {
		attr, ok := strings.CutPrefix(key, xattrRecord)
		if !ok {
			continue
		}
		if !a.root.privileged && privilegedXattr(attr) {
			a.stats.warn("xattr %s of /%s not set: not running as root", attr, n.rel())
			continue
		}
		err := n.setxattr(a.root, attr, []byte(hdr.PAXRecords[key]))
		switch {
		case err == nil:
		case skippableXattrError(err):
			a.stats.warn("xattr %s of /%s not set: %v", attr, n.rel(), err)
		default:
			return fmt.Errorf("setting xattr %s of /%s: %w", attr, n.rel(), err)
		}
	}
	return nil
}

// privilegedXattr tells the namespaces only root may write.
func privilegedXattr(attr string) bool {
	return strings.HasPrefix(attr, "security.") || strings.HasPrefix(attr, "trusted.")
}

// skippableXattrError tells errors that mean "not here", not "broken".
func skippableXattrError(err error) bool {
	for _, e := range []error{unix.ENOTSUP, unix.EOPNOTSUPP, unix.EPERM, unix.EACCES, unix.EINVAL, unix.ERANGE, unix.E2BIG} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// chmod sets mode, setuid/setgid/sticky included. Symlinks have no mode of
// their own; nor has a hardlink to one.
func (a *applier) chmod(n node, typ byte, mode uint32) error {
	if typ == tar.TypeSymlink {
		return nil
	}
	if typ == tar.TypeLink {
		var st unix.Stat_t
		if err := unix.Fstatat(n.d.fd, n.name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return pathErr("lstat", n.d, n.name, err)
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			return nil
		}
	}
	return pathErr("chmod", n.d, n.name, n.chmod(mode))
}

// entryTimes are the entry's access and modification times; a missing
// access time is the modification time.
func entryTimes(hdr *tar.Header) ([2]unix.Timespec, error) {
	atime := hdr.AccessTime
	if atime.IsZero() {
		atime = hdr.ModTime
	}
	at, err := unix.TimeToTimespec(atime)
	if err != nil {
		return [2]unix.Timespec{}, err
	}
	mt, err := unix.TimeToTimespec(hdr.ModTime)
	return [2]unix.Timespec{at, mt}, err
}

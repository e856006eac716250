package rootfs

import (
	"archive/tar"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// xattrRecord prefixes the PAX records that carry extended attributes.
const xattrRecord = "SCHILY.xattr."

// setMetadata gives name the entry's owner, xattrs, mode and times, in the
// order that keeps each: chown clears setuid and file capabilities, so it
// goes first. A directory's mode and times wait for the end of the layer.
func (a *applier) setMetadata(c *chain, name string, hdr *tar.Header) error {
	if err := a.chown(c, name, hdr); err != nil {
		return err
	}
	if err := a.setXattrs(c, name, hdr); err != nil {
		return err
	}
	mode := uint32(hdr.Mode) & 0o7777
	times, err := entryTimes(hdr)
	if err != nil {
		return pathErr("utimes", c, name, err)
	}
	if hdr.Typeflag == tar.TypeDir {
		a.fixups.dir(c.join(name), mode, times)
		return nil
	}
	if err := a.chmod(c, name, hdr.Typeflag, mode); err != nil {
		return err
	}
	return pathErr("utimes", c, name, unix.UtimesNanoAt(c.fd(), name, times[:], unix.AT_SYMLINK_NOFOLLOW))
}

// chown applies the entry's owner, or records it when ownership is off or
// the ID is not mapped in this user namespace.
func (a *applier) chown(c *chain, name string, hdr *tar.Header) error {
	owner := Owner{UID: hdr.Uid, GID: hdr.Gid}
	if !a.cfg.chown {
		a.stats.skipOwner(c.join(name), owner)
		return nil
	}
	err := unix.Fchownat(c.fd(), name, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EINVAL) {
		a.stats.warn("owner %d:%d of /%s not applied: %v", hdr.Uid, hdr.Gid, c.join(name), err)
		a.stats.skipOwner(c.join(name), owner)
		return nil
	}
	return pathErr("chown", c, name, err)
}

// setXattrs sets the entry's SCHILY.xattr.* records, best effort: what the
// filesystem or this process cannot hold is skipped with a warning.
func (a *applier) setXattrs(c *chain, name string, hdr *tar.Header) error {
	for _, key := range slices.Sorted(maps.Keys(hdr.PAXRecords)) {
		attr, ok := strings.CutPrefix(key, xattrRecord)
		if !ok {
			continue
		}
		if !a.root.privileged && privilegedXattr(attr) {
			a.stats.warn("xattr %s of /%s not set: not running as root", attr, c.join(name))
			continue
		}
		err := unix.Lsetxattr(a.root.hostPath(c, name), attr, []byte(hdr.PAXRecords[key]), 0)
		switch {
		case err == nil:
		case skippableXattrError(err):
			a.stats.warn("xattr %s of /%s not set: %v", attr, c.join(name), err)
		default:
			return fmt.Errorf("setting xattr %s of /%s: %w", attr, c.join(name), err)
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
func (a *applier) chmod(c *chain, name string, typ byte, mode uint32) error {
	if typ == tar.TypeSymlink {
		return nil
	}
	if typ == tar.TypeLink {
		var st unix.Stat_t
		if err := unix.Fstatat(c.fd(), name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return pathErr("lstat", c, name, err)
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			return nil
		}
	}
	return pathErr("chmod", c, name, unix.Fchmodat(c.fd(), name, mode, 0))
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

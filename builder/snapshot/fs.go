package snapshot

import (
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"os"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// openDir opens the directory name below the directory dirFD (any path when
// dirFD is AT_FDCWD) without following a symlink, and reads its names,
// sorted. The caller closes the file.
func openDir(dirFD int, name, display string) (*os.File, []string, error) {
	fd, err := unix.Openat(dirFD, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, &os.PathError{Op: "open", Path: display, Err: err}
	}
	return readNames(fd, display)
}

// readNames reads the sorted names of the directory open as fd, which the
// returned file then owns.
func readNames(fd int, display string) (*os.File, []string, error) {
	f := os.NewFile(uintptr(fd), display)
	names, err := f.Readdirnames(-1)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("reading directory %s: %w", display, err)
	}
	slices.Sort(names)
	return f, names, nil
}

// lstatAt stats name in the directory dirFD without following a symlink.
func lstatAt(dirFD int, name, display string) (unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(dirFD, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return st, &os.PathError{Op: "lstat", Path: display, Err: err}
	}
	return st, nil
}

// readlinkAt reads the target of the symlink name in the directory dirFD.
func readlinkAt(dirFD int, name, display string) (string, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Readlinkat(dirFD, name, buf)
		if err != nil {
			return "", &os.PathError{Op: "readlink", Path: display, Err: err}
		}
		if n < len(buf) {
			return string(buf[:n]), nil
		}
		buf = make([]byte, 2*len(buf))
	}
}

// overlayXattr tells the attributes overlayfs keeps for itself, which are
// never part of a layer.
func overlayXattr(name string) bool {
	return strings.HasPrefix(name, "trusted.overlay.") || strings.HasPrefix(name, "user.overlay.")
}

// xattrUnsupported tells errors that mean the filesystem has no xattrs.
func xattrUnsupported(err error) bool {
	return errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP)
}

// listXattrs returns the names of p's extended attributes, sorted, without
// following a symlink; overlayfs's own are left out.
func listXattrs(p string) ([]string, error) {
	size, err := unix.Llistxattr(p, nil)
	for err == nil && size > 0 {
		buf := make([]byte, size)
		var n int
		n, err = unix.Llistxattr(p, buf)
		if errors.Is(err, unix.ERANGE) {
			size, err = unix.Llistxattr(p, nil)
			continue
		}
		if err != nil {
			break
		}
		var names []string
		for name := range strings.SplitSeq(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
			if name != "" && !overlayXattr(name) {
				names = append(names, name)
			}
		}
		slices.Sort(names)
		return names, nil
	}
	if err != nil && !xattrUnsupported(err) {
		return nil, &os.PathError{Op: "listxattr", Path: p, Err: err}
	}
	return nil, nil
}

// getXattr reads one extended attribute of p, nil when it is absent.
func getXattr(p, name string) ([]byte, error) {
	for {
		size, err := unix.Lgetxattr(p, name, nil)
		if errors.Is(err, unix.ENODATA) || xattrUnsupported(err) {
			return nil, nil
		}
		if err != nil {
			return nil, &os.PathError{Op: "getxattr " + name, Path: p, Err: err}
		}
		buf := make([]byte, size)
		n, err := unix.Lgetxattr(p, name, buf)
		if errors.Is(err, unix.ERANGE) {
			continue // grew in between
		}
		if err != nil {
			return nil, &os.PathError{Op: "getxattr " + name, Path: p, Err: err}
		}
		return buf[:n], nil
	}
}

// readXattrs returns p's extended attributes (overlayfs's own left out).
func readXattrs(p string) (map[string][]byte, error) {
	names, err := listXattrs(p)
	if err != nil || len(names) == 0 {
		return nil, err
	}
	attrs := make(map[string][]byte, len(names))
	for _, name := range names {
		v, err := getXattr(p, name)
		if err != nil {
			return nil, err
		}
		if v != nil {
			attrs[name] = v
		}
	}
	return attrs, nil
}

// xattrHash summarises p's extended attributes; 0 when it has none.
func xattrHash(p string) (uint64, error) {
	attrs, err := readXattrs(p)
	if err != nil || len(attrs) == 0 {
		return 0, err
	}
	h := fnv.New64a()
	for _, name := range slices.Sorted(maps.Keys(attrs)) {
		h.Write([]byte(name))
		h.Write([]byte{0})
		h.Write(attrs[name])
		h.Write([]byte{0})
	}
	return h.Sum64() | 1, nil
}

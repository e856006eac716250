package rootfs

import (
	"errors"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// maxSymlinks is how many symlinks one walk may follow, as securejoin allows
// (the kernel's own limit, 40, is lower).
const maxSymlinks = 255

// walkMode says how a walk treats the path's last component and missing names.
type walkMode struct {
	followLast bool // a symlink in the last component is followed
	enterLast  bool // the last component is a directory to enter (the parent of an entry)
	create     bool // missing directories are made, mode 0755, instead of taken literally
}

// walker resolves paths below a root descriptor the way the kernel would if
// the root were "/", without ever asking the kernel to follow a symlink.
type walker struct {
	root int
	mode walkMode
	// prepare, when set, sees every existing directory before the walk
	// enters it (an unprivileged apply makes it writable there).
	prepare func(dir int, name, rel string, st *unix.Stat_t) error
}

// walk resolves p. It returns the chain of directories that holds the last
// component, and that component's name: "" when p ends at a directory
// reached by "/", "." or "..", or when enterLast put it in the chain.
func (w *walker) walk(p string) (*chain, string, error) {
	c := newChain(w.root)
	queue := strings.Split(p, "/")
	hops := 0
	for len(queue) > 0 {
		name := queue[0]
		queue = queue[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			c.pop()
			continue
		}
		last := len(queue) == 0 // "a/" keeps "" queued: a is entered, as the kernel does
		target, isLink, err := w.step(c, name, last)
		if err != nil {
			c.close()
			return nil, "", err
		}
		if !isLink {
			if last && !w.mode.enterLast {
				return c, name, nil
			}
			continue
		}
		if hops++; hops > maxSymlinks {
			c.close()
			return nil, "", &os.PathError{Op: "resolve", Path: p, Err: unix.ELOOP}
		}
		if path.IsAbs(target) {
			c.reset()
		}
		queue = append(strings.Split(target, "/"), queue...)
	}
	return c, "", nil
}

// step handles one name in the chain's directory: it enters it, or reports
// the symlink it is, or (for a final name) leaves it for the caller.
func (w *walker) step(c *chain, name string, last bool) (target string, isLink bool, err error) {
	final := last && !w.mode.enterLast
	dir := c.fd()
	if dir < 0 {
		if !final {
			c.push(name, -1)
		}
		return "", false, nil
	}
	var st unix.Stat_t
	err = unix.Fstatat(dir, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	switch {
	case errors.Is(err, unix.ENOENT):
		return "", false, w.missing(c, name, final)
	case err != nil:
		return "", false, &os.PathError{Op: "lstat", Path: "/" + c.join(name), Err: err}
	case st.Mode&unix.S_IFMT == unix.S_IFLNK && !(final && !w.mode.followLast):
		target, err = readlinkAt(dir, name)
		if err != nil {
			return "", false, &os.PathError{Op: "readlink", Path: "/" + c.join(name), Err: err}
		}
		return target, true, nil
	case final:
		return "", false, nil
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return "", false, &os.PathError{Op: "resolve", Path: "/" + c.join(name), Err: unix.ENOTDIR}
	}
	if w.prepare != nil {
		if err := w.prepare(dir, name, c.join(name), &st); err != nil {
			return "", false, err
		}
	}
	return "", false, enter(c, name)
}

// missing handles a name that does not exist: made when creating, else
// kept literally (nothing below it can exist either).
func (w *walker) missing(c *chain, name string, final bool) error {
	switch {
	case final:
		return nil
	case !w.mode.create:
		c.push(name, -1)
		return nil
	}
	err := unix.Mkdirat(c.fd(), name, 0o755)
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return &os.PathError{Op: "mkdir", Path: "/" + c.join(name), Err: err}
	}
	if err == nil {
		// The umask must not decide the mode of directories the layer never named.
		if err := unix.Fchmodat(c.fd(), name, 0o755, 0); err != nil {
			return &os.PathError{Op: "chmod", Path: "/" + c.join(name), Err: err}
		}
	}
	return enter(c, name)
}

// enter opens name as a directory, refusing a symlink put there since it was
// looked at (O_NOFOLLOW with O_DIRECTORY fails on one), and pushes it.
func enter(c *chain, name string) error {
	fd, err := unix.Openat(c.fd(), name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: "/" + c.join(name), Err: err}
	}
	c.push(name, fd)
	return nil
}

func readlinkAt(dir int, name string) (string, error) {
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(dir, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

package rootfs

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// removeAllAt removes name from the directory dir, and all below it if it is
// a directory, never following a symlink; display names it in errors. A
// missing name is not an error.
func removeAllAt(dir int, name, display string) error {
	err := unix.Unlinkat(dir, name, 0)
	switch {
	case err == nil, errors.Is(err, unix.ENOENT):
		return nil
	case !errors.Is(err, unix.EISDIR):
		return &os.PathError{Op: "remove", Path: display, Err: err}
	}
	// It is going: let its owner empty it even if it is read-only.
	if err := unix.Fchmodat(dir, name, 0o700, 0); err != nil {
		return &os.PathError{Op: "chmod", Path: display, Err: err}
	}
	if err := emptyDir(dir, name, display); err != nil {
		return err
	}
	if err := unix.Unlinkat(dir, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return &os.PathError{Op: "remove", Path: display, Err: err}
	}
	return nil
}

// emptyDir removes everything in the directory name of dir.
func emptyDir(dir int, name, display string) error {
	fd, err := unix.Openat(dir, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: display, Err: err}
	}
	defer unix.Close(fd)
	names, err := readDirNames(fd, display)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := removeAllAt(fd, n, display+"/"+n); err != nil {
			return err
		}
	}
	return nil
}

// readDirNames lists the directory dir (any descriptor of it, O_PATH too).
func readDirNames(dir int, display string) ([]string, error) {
	fd, err := unix.Openat(dir, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: display, Err: err}
	}
	f := os.NewFile(uintptr(fd), display)
	defer f.Close()
	return f.Readdirnames(-1)
}

package rootfs

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Resolve maps a path as the container sees it to a host path under Dir().
// Symlinks inside the root are followed as the kernel would if the root were
// "/": absolute targets restart at the root and ".." never leaves it. A
// relative containerPath is taken from "/". followLast says whether a
// symlink in the final component is followed (a trailing slash follows it
// anyway, as in the kernel). Components that do not exist are kept as
// written, so the result may name something to create. More than 255
// symlinks give an error wrapping syscall.ELOOP; a non-directory in the
// middle of the path, syscall.ENOTDIR.
func (r *Root) Resolve(containerPath string, followLast bool) (string, error) {
	rootFD, err := r.openRoot()
	if err != nil {
		return "", err
	}
	defer unix.Close(rootFD)
	w := &walker{root: rootFD, mode: walkMode{followLast: followLast}}
	c, name, err := w.walk(containerPath)
	if err != nil {
		return "", fmt.Errorf("resolving %s in %s: %w", containerPath, r.dir, err)
	}
	defer c.close()
	return r.hostPath(c.rel(), name), nil
}

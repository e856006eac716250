package rootfs

import (
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// chain is the list of directories a walk went through, from the root down:
// fds[i] is an O_PATH descriptor of the directory names[:i] leads to. Once a
// walk steps past a name that does not exist, that level and every level
// below it hold -1: nothing can exist there.
type chain struct {
	fds   []int // fds[0] is the root, owned by whoever opened it
	names []string
}

func newChain(rootFD int) *chain { return &chain{fds: []int{rootFD}} }

// fd is the directory the chain ends in, -1 when it does not exist.
func (c *chain) fd() int { return c.fds[len(c.fds)-1] }

func (c *chain) push(name string, fd int) {
	c.names = append(c.names, name)
	c.fds = append(c.fds, fd)
}

// pop goes up one level, and not at all from the root: ".." of "/" is "/".
func (c *chain) pop() {
	if len(c.names) == 0 {
		return
	}
	if fd := c.fd(); fd >= 0 {
		unix.Close(fd)
	}
	c.fds = c.fds[:len(c.fds)-1]
	c.names = c.names[:len(c.names)-1]
}

// reset goes back to the root, as an absolute symlink target does.
func (c *chain) reset() {
	for len(c.names) > 0 {
		c.pop()
	}
}

// close releases every descriptor but the root's.
func (c *chain) close() { c.reset() }

// detach releases every descriptor but the root's and the last, which it
// returns: the caller's to close, unless it is the root's.
func (c *chain) detach() int {
	fd := c.fd()
	if len(c.names) > 0 {
		c.fds[len(c.fds)-1] = -1
	}
	c.close()
	return fd
}

// rel is the path of the chain's directory relative to the root, "" for it.
func (c *chain) rel() string { return strings.Join(c.names, "/") }

// join is the path relative to the root of name in the chain's directory.
func (c *chain) join(name string) string { return path.Join(c.rel(), name) }

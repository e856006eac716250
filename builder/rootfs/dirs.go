package rootfs

import (
	"errors"

	"golang.org/x/sys/unix"
)

// dirRef is an open folder of the root: fd, an O_PATH descriptor, and rel,
// its path relative to the root with symlinks resolved ("" for the root).
type dirRef struct {
	fd  int
	rel string
}

// join is the path relative to the root of name in the folder.
func (d dirRef) join(name string) string {
	if d.rel == "" {
		return name
	}
	return d.rel + "/" + name
}

// maxCachedDirs bounds the folders an applier keeps open. A layer lists a
// folder's entries together, and its subfolders' right after: a few dozen
// cover the folders a layer is filling at any moment.
const maxCachedDirs = 64

// dirCache keeps the folders of recent entries open, by the path the layer
// names them with, so that most entries find their folder without a lookup.
// A cached path leads to its folder for as long as nothing on the way is
// removed: whoever removes a folder or a symlink calls forget. Descriptors
// are closed between entries (settle), never under one that may be using
// them.
type dirCache struct {
	dirs    map[string]cachedDir
	retired []int
}

type cachedDir struct {
	dirRef
	writable bool // an unprivileged apply made it writable (see dirCreate)
}

func (c *dirCache) get(rel string) (cachedDir, bool) {
	d, ok := c.dirs[rel]
	return d, ok
}

func (c *dirCache) put(rel string, d cachedDir) {
	if old, ok := c.dirs[rel]; ok {
		c.retired = append(c.retired, old.fd)
	}
	if c.dirs == nil {
		c.dirs = map[string]cachedDir{}
	}
	c.dirs[rel] = d
}

// forget drops every cached path: something they may lead through is gone.
func (c *dirCache) forget() {
	for rel, d := range c.dirs {
		c.retired = append(c.retired, d.fd)
		delete(c.dirs, rel)
	}
}

// settle closes what was forgotten, and empties a full cache; between
// entries only.
func (c *dirCache) settle() {
	if len(c.dirs) > maxCachedDirs {
		c.forget()
	}
	for _, fd := range c.retired {
		unix.Close(fd)
	}
	c.retired = c.retired[:0]
}

func (c *dirCache) close() {
	c.forget()
	c.settle()
}

// How a folder is looked up (applier.dir).
type dirMode int

const (
	dirLookup dirMode = iota // it may be missing; nothing is changed
	dirWrite                 // entries are removed from it: an unprivileged apply makes it writable
	dirCreate                // entries are created in it: also made, like every missing folder on the way
)

// dir opens the folder rel (clean, relative to the root, as a layer names
// it) and says whether it exists; symlinks on the way are followed inside
// the root. The descriptor is the applier's (cached): the caller must not
// close it, and may use it until the next entry.
func (a *applier) dir(rel string, mode dirMode) (dirRef, bool, error) {
	if rel == "" {
		return dirRef{fd: a.rootFD}, true, nil
	}
	if d, ok := a.dirs.get(rel); ok && (d.writable || mode == dirLookup) {
		a.stats.lookups.cached++
		return d.dirRef, true, nil
	}
	d, ok, err := a.openDir(rel, mode)
	if err != nil || !ok || d.fd == a.rootFD {
		return d, ok, err
	}
	a.dirs.put(rel, cachedDir{dirRef: d, writable: mode != dirLookup || a.root.privileged})
	return d, true, nil
}

// openDir opens rel with one openat2 when it is plain folders all the way
// (the common case), else by walking it (walker), which follows symlinks
// inside the root, makes missing folders and gives the errors.
func (a *applier) openDir(rel string, mode dirMode) (dirRef, bool, error) {
	if fd, ok := a.openBeneath(rel, mode); ok {
		a.stats.lookups.beneath++
		return dirRef{fd: fd, rel: rel}, true, nil
	}
	a.stats.lookups.walked++
	w := &walker{root: a.rootFD, mode: walkMode{followLast: true, enterLast: true, create: mode == dirCreate}}
	if mode != dirLookup && !a.root.privileged {
		w.prepare = a.makeWritable
	}
	c, _, err := w.walk(rel)
	if err != nil {
		return dirRef{}, false, err
	}
	if c.fd() < 0 {
		c.close()
		return dirRef{}, false, nil
	}
	d := dirRef{rel: c.rel()}
	d.fd = c.detach()
	return d, true, nil
}

// openBeneath opens rel with openat2, refusing any symlink and any way out
// of the root: what it opens is the folder at exactly that path, so the
// path needs no resolving. Anything else (a symlink on the way, a missing
// folder, no permission, no openat2 in this kernel) is left to the walk,
// which decides what it means. An unprivileged apply takes only a folder
// its owner may already write into; the walk makes the others writable.
func (a *applier) openBeneath(rel string, mode dirMode) (int, bool) {
	if a.noOpenat2 {
		return -1, false
	}
	fd, err := unix.Openat2(a.rootFD, rel, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		if unavailable(err) {
			a.noOpenat2 = true
		}
		return -1, false
	}
	if mode != dirLookup && !a.root.privileged {
		var st unix.Stat_t
		if unix.Fstat(fd, &st) != nil || st.Mode&0o700 != 0o700 {
			unix.Close(fd)
			return -1, false
		}
	}
	return fd, true
}

// unavailable tells the errors that mean this kernel, or a seccomp profile,
// offers no openat2 (or not these flags): asking again is pointless.
func unavailable(err error) bool {
	return errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.E2BIG)
}

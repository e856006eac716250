package rootfs

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// OCI whiteouts (image-spec layer.md): ".wh.NAME" deletes NAME from lower
// layers, ".wh..wh..opq" hides everything lower layers put in its directory.
const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh."
	opaqueMarker   = ".wh..wh..opq"
)

// ReservedName says whether a file called name (one path element) would be
// read as a whiteout in a layer: any name starting with ".wh.", which
// covers opaque markers and AUFS metadata too. It is the one test every
// writer of layers (COPY, ADD, the RUN snapshot) applies to what it writes.
func ReservedName(name string) bool { return strings.HasPrefix(name, whiteoutPrefix) }

// CheckName refuses p (a path as the user knows it: in the build context,
// a stage, an archive) when its last element is a ReservedName; the error
// names p and wraps ErrReservedName.
func CheckName(p string) error {
	if ReservedName(path.Base(p)) {
		return fmt.Errorf("%s: %w", p, ErrReservedName)
	}
	return nil
}

// isWhiteout tells entries that delete rather than add: whiteouts, opaque
// markers, and AUFS metadata (".wh..wh.plnk/...") which is skipped.
func isWhiteout(rel string) bool {
	return ReservedName(path.Base(rel)) || strings.HasPrefix(rel, whiteoutMeta)
}

// whiteout applies the whiteout entry rel. Its directory is resolved inside
// the root like any entry's, and its name must be one plain component.
func (a *applier) whiteout(rel string) error {
	dir, base := splitRel(rel)
	switch {
	case base == opaqueMarker:
		return a.opaque(dir)
	case strings.HasPrefix(rel, whiteoutMeta) || strings.HasPrefix(base, whiteoutMeta):
		a.stats.warn("AUFS metadata /%s ignored", rel)
		return nil
	}
	name := strings.TrimPrefix(base, whiteoutPrefix)
	if name == "" || name == "." || name == ".." {
		return fmt.Errorf("%w: whiteout %q names no file", ErrInvalidLayer, base)
	}
	d, ok, err := a.whiteoutDir(dir)
	if err != nil || !ok {
		return err
	}
	a.dirs.forget() // what goes may be a folder or a symlink cached paths lead through
	return a.root.removeAt(d.fd, name, d.join(name))
}

// opaque removes from dir everything this layer did not write, before or
// after the marker (containerd's order-independent reading).
func (a *applier) opaque(dir string) error {
	d, ok, err := a.whiteoutDir(dir)
	if err != nil || !ok {
		return err
	}
	a.dirs.forget()
	return a.clearOpaque(d.fd, d.rel)
}

// whiteoutDir resolves the directory a whiteout applies to; ok is false
// when there is none (missing, or a file in the way): then there is
// nothing to delete.
func (a *applier) whiteoutDir(dir string) (d dirRef, ok bool, err error) {
	a.stats.Whiteouts++
	d, ok, err = a.dir(dir, dirWrite)
	if errors.Is(err, unix.ENOTDIR) {
		return dirRef{}, false, nil
	}
	return d, ok, err
}

// clearOpaque removes what the layer did not write below the directory
// dir (at rel), keeping what it did and descending into kept directories:
// their lower contents are hidden too.
func (a *applier) clearOpaque(dir int, rel string) error {
	names, err := readDirNames(dir, "/"+rel)
	if err != nil {
		return err
	}
	for _, n := range names {
		p := path.Join(rel, n)
		if !a.unpacked[p] {
			if err := a.root.removeAt(dir, n, p); err != nil {
				return err
			}
			continue
		}
		sub, err := unix.Openat(dir, n, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOTDIR) {
			continue
		}
		if err != nil {
			return &os.PathError{Op: "open", Path: "/" + p, Err: err}
		}
		err = a.clearOpaque(sub, p)
		unix.Close(sub)
		if err != nil {
			return err
		}
	}
	return nil
}

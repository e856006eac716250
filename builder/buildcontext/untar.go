package buildcontext

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"slices"
	"strings"
	"time"
)

// extractor writes a tar stream under one folder and nowhere else. Every
// access goes through an os.Root (openat, component by component, O_NOFOLLOW),
// files are created with O_EXCL so a planted symlink is never followed, and
// an entry whose parent is a symlink is refused outright: tar tools never
// write one, so it can only be an attempt to write through the link.
type extractor struct {
	root *os.Root
	dirs map[string]bool // folders known to be real folders, not symlinks
	meta map[string]dirMeta
}

// dirMeta is applied to folders last, once nothing more is written in them.
type dirMeta struct {
	mode  fs.FileMode
	mtime time.Time
}

const writeBits = 0o700 // owner bits folders keep while we write in them

func extractTar(ctx context.Context, r io.Reader, dest string) error {
	root, err := os.OpenRoot(dest)
	if err != nil {
		return err
	}
	defer root.Close()
	x := &extractor{root: root, dirs: map[string]bool{}, meta: map[string]dirMeta{}}
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return x.finish()
		}
		if err != nil {
			return fmt.Errorf("reading tar: %w", err)
		}
		if err := x.entry(hdr, tr); err != nil {
			return fmt.Errorf("extracting tar entry %q: %w", hdr.Name, err)
		}
	}
}

// entryName cleans a tar name: absolute names are taken relative to the
// folder (as Docker does), names climbing out of it are refused.
func entryName(name string) (string, error) {
	p := path.Clean(name)
	switch {
	case path.IsAbs(p):
		return p[1:], nil // Clean left no ".." in it
	case p == ".." || strings.HasPrefix(p, "../"):
		return "", fmt.Errorf("%w: %q leaves the context", ErrUnsafeArchive, name)
	case p == ".":
		return "", nil
	}
	return p, nil
}

func (x *extractor) entry(hdr *tar.Header, r io.Reader) error {
	name, err := entryName(hdr.Name)
	if err != nil || name == "" {
		return err // the folder itself keeps its own mode
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		return x.mkdir(name, hdr)
	case tar.TypeReg, tar.TypeCont, tar.TypeGNUSparse: // the reader turns TypeRegA into TypeReg
		return x.file(name, hdr, r)
	case tar.TypeSymlink:
		return x.symlink(name, hdr)
	case tar.TypeLink:
		return x.hardlink(name, hdr)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo, tar.TypeXGlobalHeader:
		return nil // no device nodes or fifos in a build context
	default:
		return fmt.Errorf("unsupported tar entry type %q", hdr.Typeflag)
	}
}

func (x *extractor) mkdir(name string, hdr *tar.Header) error {
	x.meta[name] = dirMeta{mode: tarMode(hdr), mtime: hdr.ModTime}
	if err := x.walkParents(name, true); err != nil {
		return err
	}
	if fi, err := x.root.Lstat(name); err == nil && fi.IsDir() {
		x.dirs[name] = true
		return nil
	}
	if err := x.clear(name); err != nil {
		return err
	}
	if err := x.root.Mkdir(name, writeBits); err != nil {
		return err
	}
	x.dirs[name] = true
	return nil
}

func (x *extractor) file(name string, hdr *tar.Header, r io.Reader) error {
	if err := x.prepare(name); err != nil {
		return err
	}
	f, err := x.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	n, err := io.Copy(f, r)
	if err == nil && n != hdr.Size {
		err = io.ErrUnexpectedEOF
	}
	if err == nil {
		err = f.Chmod(tarMode(hdr))
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: data shorter than its header says: %w", ErrUnsafeArchive, err)
	}
	if err != nil {
		return err
	}
	return x.root.Chtimes(name, hdr.ModTime, hdr.ModTime)
}

func (x *extractor) symlink(name string, hdr *tar.Header) error {
	if err := x.prepare(name); err != nil {
		return err
	}
	// The target may point anywhere: Resolve re-roots it at the context root.
	return x.root.Symlink(hdr.Linkname, name)
}

func (x *extractor) hardlink(name string, hdr *tar.Header) error {
	target, err := entryName(hdr.Linkname)
	if err != nil {
		return err
	}
	if target == "" {
		return fmt.Errorf("%w: hardlink to the context root", ErrUnsafeArchive)
	}
	if err := x.walkParents(target, false); err != nil {
		return err
	}
	if err := x.prepare(name); err != nil {
		return err
	}
	return x.root.Link(target, name)
}

// prepare makes name's parents and removes whatever name was before.
func (x *extractor) prepare(name string) error {
	if err := x.walkParents(name, true); err != nil {
		return err
	}
	return x.clear(name)
}

// clear removes name if it exists; a replaced folder forgets what we knew.
func (x *extractor) clear(name string) error {
	fi, err := x.root.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return x.root.Remove(name)
	}
	x.dirs = map[string]bool{}
	return x.root.RemoveAll(name)
}

// walkParents checks that each parent of name is a real folder, making
// missing ones if create is set, and refuses to go through a symlink.
func (x *extractor) walkParents(name string, create bool) error {
	for i := 0; i < len(name); i++ {
		if name[i] != '/' {
			continue
		}
		if err := x.parent(name[:i], create); err != nil {
			return err
		}
	}
	return nil
}

func (x *extractor) parent(dir string, create bool) error {
	if x.dirs[dir] {
		return nil
	}
	fi, err := x.root.Lstat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist) && create:
		if err := x.root.Mkdir(dir, 0o755|writeBits); err != nil {
			return err
		}
	case err != nil:
		return err
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%w: %q is a symlink, not a folder to write in", ErrUnsafeArchive, dir)
	case !fi.IsDir():
		return fmt.Errorf("%w: %q is not a folder", ErrUnsafeArchive, dir)
	}
	x.dirs[dir] = true
	return nil
}

// finish gives folders their modes and times, once nothing is written in
// them, deepest first so a parent's mode cannot lock us out of a child.
func (x *extractor) finish() error {
	names := slices.Sorted(maps.Keys(x.meta))
	slices.Reverse(names)
	for _, name := range names {
		m := x.meta[name]
		fi, err := x.root.Lstat(name)
		if err != nil || !fi.IsDir() {
			continue // replaced by a later entry
		}
		if err := x.root.Chmod(name, m.mode); err != nil {
			return fmt.Errorf("setting mode of %s: %w", name, err)
		}
		if err := x.root.Chtimes(name, m.mtime, m.mtime); err != nil {
			return fmt.Errorf("setting times of %s: %w", name, err)
		}
	}
	return nil
}

// tarMode keeps permission, setuid, setgid and sticky bits.
func tarMode(hdr *tar.Header) fs.FileMode {
	return hdr.FileInfo().Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
}

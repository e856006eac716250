package builder

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"kiln/builder/rootfs"
)

// stageFiles is what instructions that only add files (COPY, ADD, WORKDIR)
// read of the stage they add to: where its symlinks lead, what is at a
// path, the user and group files. An unpacked root answers when the stage
// has one; else an index of its layers' tar headers, which costs
// decompressing them once instead of creating every file (a one-file COPY
// onto a 50,000-file base: 0.8 s against 8 s here).
type stageFiles interface {
	// resolve returns p as the container sees it: the stage's symlinks
	// followed, in the last element too when followLast.
	resolve(p string, followLast bool) (string, error)
	// lstat describes what is at p, a path resolve returned.
	lstat(p string) (fileMeta, bool)
	// readFile reads a small file (symlinks followed); errNoContent when
	// only the unpacked root could tell.
	readFile(p string) ([]byte, error)
}

// fileMeta is what stageFiles tells of one file.
type fileMeta struct {
	mode     fs.FileMode
	mtime    time.Time
	uid, gid int
}

var errNoContent = errors.New("content not indexed")

// idFiles are the files whose content the index keeps for --chown and USER.
var idFiles = []string{"/etc/passwd", "/etc/group"}

// stageFiles gives the stage's root when it has one, else its index,
// reading it the first time.
func (b *builder) stageFiles(ctx context.Context, s *stageState) (stageFiles, error) {
	if s.root != nil {
		return rootFiles{root: s.root, owners: s.owners}, nil
	}
	if s.index == nil {
		img, err := s.image()
		if err != nil {
			return nil, err
		}
		start := time.Now()
		x, err := rootfs.NewIndex(ctx, img, idFiles...)
		if err != nil {
			return nil, fmt.Errorf("reading the filesystem of stage %s: %w", s.name, err)
		}
		b.o.log.Info("indexed the stage's filesystem", "stage", s.name, "entries", x.Entries(),
			"seconds", roundSeconds(time.Since(start)))
		s.index = x
	}
	return indexFiles{s.index}, nil
}

// rootFiles is an unpacked stage.
type rootFiles struct {
	root   *rootfs.Root
	owners map[string]rootfs.Owner
}

func (r rootFiles) resolve(p string, followLast bool) (string, error) {
	host, err := r.root.Resolve(p, followLast)
	if err != nil {
		return "", err
	}
	rel, err := filepath.Rel(r.root.Dir(), host)
	if err != nil || strings.HasPrefix(rel, "..") {
		return "", fs.ErrInvalid
	}
	return path.Clean("/" + filepath.ToSlash(rel)), nil
}

func (r rootFiles) lstat(p string) (fileMeta, bool) {
	host, err := r.root.Resolve(p, false)
	if err != nil {
		return fileMeta{}, false
	}
	fi, err := os.Lstat(host)
	if err != nil {
		return fileMeta{}, false
	}
	uid, gid := rootSource{root: r.root, owners: r.owners}.owner(host, fi)
	return fileMeta{mode: fi.Mode(), mtime: fi.ModTime(), uid: uid, gid: gid}, true
}

func (r rootFiles) readFile(p string) ([]byte, error) {
	host, err := r.root.Resolve(p, true)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(host)
}

// indexFiles is a stage known by its layers' headers.
type indexFiles struct{ x *rootfs.Index }

func (i indexFiles) resolve(p string, followLast bool) (string, error) {
	return i.x.Resolve(p, followLast)
}

func (i indexFiles) lstat(p string) (fileMeta, bool) {
	e, ok := i.x.Lstat(p)
	return fileMeta{mode: e.Mode, mtime: e.ModTime, uid: e.UID, gid: e.GID}, ok
}

func (i indexFiles) readFile(p string) ([]byte, error) {
	r, err := i.x.Resolve(p, true)
	if err != nil {
		return nil, err
	}
	e, ok := i.x.Lstat(r)
	switch {
	case !ok:
		return nil, &fs.PathError{Op: "open", Path: p, Err: fs.ErrNotExist}
	case e.Mode.IsRegular() && e.Data != nil:
		return e.Data, nil
	case e.Mode.IsRegular() && e.Size == 0:
		return nil, nil
	}
	return nil, errNoContent
}

package builder

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/patternmatcher"

	"kiln/builder/rootfs"
)

// copyWriter writes the entries of one COPY or ADD into a layer. It consults
// the stage's files (nil with --link) for folders that exist already.
type copyWriter struct {
	b       *builder
	s       *stageState
	lw      *layerWriter
	src     fileSource
	from    string // --from: "" for the build context
	own     *owner // --chown; nil keeps the source's owners
	chmod   *chmod // --chmod; nil keeps the source's modes
	files   stageFiles
	exclude *patternmatcher.PatternMatcher // --exclude; nil: none
	written map[string]bool                // folders already in the layer
	links   map[[2]uint64]string           // (dev, inode) of files with several links → first name written
}

func (b *builder) newCopyWriter(ctx context.Context, s *stageState, spec copySpec, src fileSource) (*copyWriter, error) {
	if spec.link && chownByName(spec.chown) {
		return nil, fmt.Errorf("--chown=%s: %w", spec.chown, errLinkChownName)
	}
	own, err := b.resolveOwner(ctx, s, spec.chown)
	if err != nil {
		return nil, fmt.Errorf("--chown=%s: %w", spec.chown, err)
	}
	cm, err := parseChmod(spec.chmod)
	if err != nil {
		return nil, err
	}
	var files stageFiles
	if !spec.link {
		if files, err = b.stageFiles(ctx, s); err != nil {
			return nil, err
		}
	}
	exclude, err := excludeMatcher(spec.exclude)
	if err != nil {
		return nil, err
	}
	lw, err := newLayerWriter(b.layerPath(), b.epoch, b.o)
	if err != nil {
		return nil, err
	}
	return &copyWriter{
		b: b, s: s, lw: lw, src: src, from: spec.from, own: own, chmod: cm,
		files: files, exclude: exclude, written: map[string]bool{}, links: map[[2]uint64]string{},
	}, nil
}

// excludeMatcher compiles --exclude patterns (.dockerignore syntax).
func excludeMatcher(patterns []string) (*patternmatcher.PatternMatcher, error) {
	if len(patterns) == 0 {
		return nil, nil
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		return nil, fmt.Errorf("--exclude: %w", err)
	}
	return pm, nil
}

// excluded says whether --exclude drops a source: matched as a path from the
// source root, or from the folder being copied.
func (cw *copyWriter) excluded(paths ...string) bool {
	if cw.exclude == nil {
		return false
	}
	for _, p := range paths {
		if ok, _ := cw.exclude.MatchesOrParentMatches(path.Clean(p)); ok {
			return true
		}
	}
	return false
}

// copyAll copies every source item, download and heredoc to spec.dest. When
// two sources land on one file (a wildcard matching a/x.conf and b/x.conf,
// or two sources of one name), only the last is written, as later sources
// overwrite earlier ones in Docker: a layer never holds one path twice.
func (cw *copyWriter) copyAll(ctx context.Context, items []srcItem, spec copySpec) error {
	dest, dir, err := cw.destination(spec, len(items)+len(spec.remote)+len(spec.contents))
	if err != nil {
		return err
	}
	targets := cw.fileTargets(items, spec, dest, dir)
	last := map[string]int{}
	for i, t := range targets {
		if t != "" {
			last[t] = i
		}
	}
	shadowed := func(i int) bool { return targets[i] != "" && last[targets[i]] != i }
	for i, item := range items {
		if err := ctx.Err(); err != nil {
			return err
		}
		if shadowed(i) {
			continue
		}
		if item.keep != "" {
			err = cw.copyItem(item.rel, path.Join(dest, item.keep), false, false)
		} else {
			err = cw.copyItem(item.rel, dest, dir, spec.unpack)
		}
		if err != nil {
			return err
		}
	}
	for i, dl := range spec.remote {
		if shadowed(len(items) + i) {
			continue
		}
		if err := cw.downloaded(dl, dest, dir); err != nil {
			return err
		}
	}
	for i, c := range spec.contents {
		if shadowed(len(items) + len(spec.remote) + i) {
			continue
		}
		if err := cw.heredoc(c, dest, dir); err != nil {
			return err
		}
	}
	return nil
}

// fileTargets is, for every item, download and heredoc in copy order, the
// one file it writes, or "" when it writes a folder's contents or (ADD) may
// unpack an archive.
func (cw *copyWriter) fileTargets(items []srcItem, spec copySpec, dest string, dir bool) []string {
	targets := make([]string, 0, len(items)+len(spec.remote)+len(spec.contents))
	in := func(base string) string {
		if dir {
			return path.Join(dest, base)
		}
		return dest
	}
	for _, item := range items {
		t := ""
		if !cw.excluded(item.rel) {
			if host, err := cw.src.Resolve(item.rel); err == nil {
				if fi, err := os.Stat(host); err == nil && !fi.IsDir() && !(spec.unpack && fi.Mode().IsRegular()) {
					t = in(path.Base(item.rel))
					if item.keep != "" {
						t = path.Join(dest, item.keep)
					}
				}
			}
		}
		targets = append(targets, t)
	}
	for _, dl := range spec.remote {
		targets = append(targets, in(dl.base))
	}
	for _, c := range spec.contents {
		targets = append(targets, in(c.Path))
	}
	return targets
}

// destination is where n sources go, as the stage sees it, and whether it is
// a folder: written with a trailing slash, several sources, --parents, or a
// folder the stage has.
func (cw *copyWriter) destination(spec copySpec, n int) (string, bool, error) {
	dest, dir := destPath(cw.s.cfg.Config.WorkingDir, spec.dest)
	dir = dir || spec.parents
	if len(spec.srcs)+len(spec.remote)+len(spec.contents) > 1 && !dir {
		return "", false, errMultipleSources
	}
	if n > 1 && !dir && !cw.isDir(dest) {
		// A wildcard matching several files: the destination must be a
		// folder (Dockerfile reference, COPY).
		return "", false, errMultipleSources
	}
	dir = dir || n > 1 || cw.isDir(dest)
	dest, err := cw.resolve(dest, dir)
	if err != nil {
		return "", false, fmt.Errorf("destination %s: %w", spec.dest, err)
	}
	return dest, dir, nil
}

// downloaded writes a file fetched by ADD <url>: mode 0600, as Docker has it.
func (cw *copyWriter) downloaded(dl download, dest string, dir bool) error {
	target := dest
	if dir {
		target = path.Join(dest, dl.base)
	}
	if err := cw.mkdirs(path.Dir(target)); err != nil {
		return err
	}
	fi, err := os.Stat(dl.host)
	if err != nil {
		return err
	}
	e := entry{name: target, typ: tar.TypeReg, mode: 0o600, size: fi.Size(), mtime: dl.mtime}
	cw.apply(&e, 0, 0)
	return cw.regular(e, dl.host)
}

// copyItem copies one matched source: a folder by its contents, an archive
// (ADD) by its entries, anything else as a file.
func (cw *copyWriter) copyItem(rel, dest string, dir, unpack bool) error {
	if cw.excluded(rel) {
		return nil
	}
	host, err := cw.src.Resolve(rel)
	if err != nil {
		return err
	}
	fi, err := os.Stat(host)
	if err != nil {
		return err
	}
	if err := cw.checkSource(rel, fi); err != nil {
		return err
	}
	if fi.IsDir() {
		if err := cw.destDir(dest, host, fi); err != nil {
			return err
		}
		return cw.src.Walk(rel, func(sub string, info fs.FileInfo) error {
			if cw.excluded(path.Join(rel, sub), sub) {
				if info.IsDir() {
					return fs.SkipDir
				}
				return nil
			}
			if err := cw.checkSource(path.Join(rel, sub), info); err != nil {
				return err
			}
			return cw.entry(path.Join(dest, sub), filepath.Join(host, filepath.FromSlash(sub)), info)
		})
	}
	if unpack && fi.Mode().IsRegular() {
		if done, err := cw.extract(host, dest); done || err != nil {
			return err
		}
	}
	target := dest
	if dir {
		target = path.Join(dest, path.Base(rel))
	}
	if err := cw.mkdirs(path.Dir(target)); err != nil {
		return err
	}
	return cw.entry(target, host, fi)
}

// errSpecialFile is wrapped by the error for a source that is neither a
// regular file, a folder nor a symlink: a fifo, a socket, a device.
var errSpecialFile = errors.New("COPY and ADD copy only regular files, folders and symlinks")

// checkSource refuses a source (rel, in the context or the --from stage)
// that cannot enter a layer as it is: a name appliers would read as a
// whiteout, deleting a file of the image for everyone who pulls it, or a
// special file, which would otherwise be left out without a word.
func (cw *copyWriter) checkSource(rel string, fi fs.FileInfo) error {
	p := path.Clean(rel)
	if cw.from != "" {
		p = path.Clean("/" + rel)
	}
	err := rootfs.CheckName(p)
	if kind := specialKind(fi.Mode()); err == nil && kind != "" {
		err = fmt.Errorf("%s is %s: %w", p, kind, errSpecialFile)
	}
	if err != nil && cw.from != "" {
		if errors.Is(err, rootfs.ErrReservedName) {
			// Only a base image can hold such a name (RUN and COPY refuse
			// to make one): content from elsewhere, not the user's input.
			return fmt.Errorf("--from=%s: %w (%w)", cw.from, err, rootfs.ErrInvalidLayer)
		}
		return fmt.Errorf("--from=%s: %w", cw.from, err)
	}
	return err
}

// specialKind names what a file of mode m is when COPY cannot copy it, ""
// when it can.
func specialKind(m fs.FileMode) string {
	switch {
	case m.IsRegular(), m.IsDir(), m&fs.ModeSymlink != 0:
		return ""
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (fifo)"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	}
	return "not a regular file"
}

// heredoc writes an inline file (COPY <<EOF).
func (cw *copyWriter) heredoc(c instructions.SourceContent, dest string, dir bool) error {
	target := dest
	if dir {
		target = path.Join(dest, c.Path)
	}
	if err := cw.mkdirs(path.Dir(target)); err != nil {
		return err
	}
	e := entry{name: target, typ: tar.TypeReg, mode: 0o644, size: int64(len(c.Data)), mtime: cw.b.created}
	cw.apply(&e, 0, 0)
	return cw.lw.write(e, strings.NewReader(c.Data))
}

// entry writes one source entry (Lstat info) to name.
func (cw *copyWriter) entry(name, host string, info fs.FileInfo) error {
	uid, gid := cw.src.owner(host, info)
	e := entry{name: name, mode: tarMode(info.Mode()), mtime: info.ModTime()}
	switch {
	case info.IsDir():
		e.typ = tar.TypeDir
		cw.written[name] = true
	case info.Mode().IsRegular():
		e.typ, e.size = tar.TypeReg, info.Size()
		cw.apply(&e, uid, gid)
		if first, ok := cw.hardlink(name, info); ok {
			e.typ, e.size, e.link = tar.TypeLink, 0, tarName(first, tar.TypeReg)
			return cw.lw.write(e, nil)
		}
		return cw.regular(e, host)
	case info.Mode()&fs.ModeSymlink != 0:
		link, err := os.Readlink(host)
		if err != nil {
			return err
		}
		e.typ, e.link, e.mode = tar.TypeSymlink, link, 0o777
		e.uid, e.gid = uid, gid
		if cw.own != nil {
			e.uid, e.gid = cw.own.uid, cw.own.gid
		}
		return cw.lw.write(e, nil)
	default:
		// checkSource refused it before; a file replaced since is refused too.
		return fmt.Errorf("%s: %w", name, errSpecialFile)
	}
	cw.apply(&e, uid, gid)
	return cw.lw.write(e, nil)
}

// hardlink keeps hardlinks inside one copy: a file already written under
// another name becomes a link to it.
func (cw *copyWriter) hardlink(name string, info fs.FileInfo) (string, bool) {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok || st.Nlink < 2 || cw.links == nil {
		return "", false
	}
	key := [2]uint64{uint64(st.Dev), st.Ino}
	if first, ok := cw.links[key]; ok {
		return first, true
	}
	cw.links[key] = name
	return "", false
}

// regular streams a file's content into the layer.
func (cw *copyWriter) regular(e entry, host string) error {
	f, err := os.Open(host)
	if err != nil {
		return err
	}
	defer f.Close()
	return cw.lw.write(e, f)
}

// apply sets --chown (else uid, gid) and --chmod on a copied entry.
func (cw *copyWriter) apply(e *entry, uid, gid int) {
	e.uid, e.gid = uid, gid
	if cw.own != nil {
		e.uid, e.gid = cw.own.uid, cw.own.gid
	}
	if cw.chmod != nil {
		e.mode = cw.chmod.of(e.mode, e.typ)
	}
}

// tarMode is a FileMode as tar header mode bits.
func tarMode(m fs.FileMode) int64 {
	mode := int64(m.Perm())
	if m&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	return mode
}

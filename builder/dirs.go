package builder

import (
	"archive/tar"
	"fmt"
	"io/fs"
	"path"
)

// isDir says whether p is a folder in the stage (symlinks followed).
func (cw *copyWriter) isDir(p string) bool {
	if cw.files == nil {
		return false
	}
	r, err := cw.files.resolve(p, true)
	if err != nil {
		return false
	}
	m, ok := cw.files.lstat(r)
	return ok && m.mode.IsDir()
}

// isFile reports whether the stage has p as something other than a folder.
func (cw *copyWriter) isFile(p string) bool {
	if cw.files == nil || cw.written[p] {
		return false
	}
	r, err := cw.files.resolve(p, false)
	if err != nil {
		return false
	}
	m, ok := cw.files.lstat(r)
	return ok && !m.mode.IsDir()
}

// resolve follows the stage's symlinks in dest (in its last element too when
// it names a folder), so entries land where the container would see them.
func (cw *copyWriter) resolve(dest string, dir bool) (string, error) {
	if cw.files == nil || dest == "/" {
		return dest, nil
	}
	if dir {
		return cw.files.resolve(dest, true)
	}
	parent, err := cw.files.resolve(path.Dir(dest), true)
	if err != nil {
		return "", err
	}
	return path.Join(parent, path.Base(dest)), nil
}

// existing describes the folder at p in the stage, not following a last
// symlink.
func existing(files stageFiles, p string) (fileMeta, bool) {
	if files == nil {
		return fileMeta{}, false
	}
	r, err := files.resolve(p, false)
	if err != nil {
		return fileMeta{}, false
	}
	m, ok := files.lstat(r)
	return m, ok && m.mode.IsDir()
}

// mkdirs puts p and its parents in the layer: a folder the stage has keeps
// its metadata, a new one is 0755, owned by --chown's owner or root.
func (cw *copyWriter) mkdirs(p string) error { return cw.mkdirsOwned(p, cw.own) }

// mkdirsOwned is mkdirs with own (nil: root) as the owner of new folders.
func (cw *copyWriter) mkdirsOwned(p string, own *owner) error {
	if p == "/" || p == "." || cw.written[p] {
		return nil
	}
	if err := cw.mkdirsOwned(path.Dir(p), own); err != nil {
		return err
	}
	cw.written[p] = true
	e := entry{name: p, typ: tar.TypeDir, mode: 0o755, mtime: cw.b.created}
	if m, ok := existing(cw.files, p); ok {
		e.mode, e.mtime = tarMode(m.mode), m.mtime
		e.uid, e.gid = m.uid, m.gid
	} else if own != nil {
		e.uid, e.gid = own.uid, own.gid
	}
	return cw.lw.write(e, nil)
}

// destDir writes the folder a source folder is copied into: as it is in the
// stage when it exists, else with the source folder's metadata.
func (cw *copyWriter) destDir(dest, host string, fi fs.FileInfo) error {
	if _, ok := existing(cw.files, dest); ok || dest == "/" {
		return cw.mkdirs(dest)
	}
	if cw.isFile(dest) {
		// As BuildKit ("cannot copy to non-directory") and buildah do.
		return fmt.Errorf("cannot copy a folder onto %s: it exists and is not a folder", dest)
	}
	if err := cw.mkdirs(path.Dir(dest)); err != nil {
		return err
	}
	if cw.written[dest] {
		return nil
	}
	cw.written[dest] = true
	uid, gid := cw.src.owner(host, fi)
	e := entry{name: dest, typ: tar.TypeDir, mode: tarMode(fi.Mode()), mtime: fi.ModTime()}
	cw.apply(&e, uid, gid)
	return cw.lw.write(e, nil)
}

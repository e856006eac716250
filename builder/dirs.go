package builder

import (
	"archive/tar"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"kiln/builder/rootfs"
)

// isDir says whether p is a folder in the stage (symlinks followed).
func (cw *copyWriter) isDir(p string) bool {
	if cw.root == nil {
		return false
	}
	host, err := cw.root.Resolve(p, true)
	if err != nil {
		return false
	}
	fi, err := os.Lstat(host)
	return err == nil && fi.IsDir()
}

// isFile reports whether the stage has p as something other than a folder.
func (cw *copyWriter) isFile(p string) bool {
	if cw.root == nil || cw.written[p] {
		return false
	}
	host, err := cw.root.Resolve(p, false)
	if err != nil {
		return false
	}
	fi, err := os.Lstat(host)
	return err == nil && !fi.IsDir()
}

// resolve follows the stage's symlinks in dest (in its last element too when
// it names a folder), so entries land where the container would see them.
func (cw *copyWriter) resolve(dest string, dir bool) (string, error) {
	if cw.root == nil || dest == "/" {
		return dest, nil
	}
	if dir {
		return containerPath(cw.root, dest)
	}
	parent, err := containerPath(cw.root, path.Dir(dest))
	if err != nil {
		return "", err
	}
	return path.Join(parent, path.Base(dest)), nil
}

// containerPath is p with the root's symlinks resolved, as the container
// sees it.
func containerPath(root *rootfs.Root, p string) (string, error) {
	host, err := root.Resolve(p, true)
	if err != nil {
		return "", err
	}
	rel, err := filepath.Rel(root.Dir(), host)
	if err != nil || strings.HasPrefix(rel, "..") {
		return "", fs.ErrInvalid
	}
	return path.Clean("/" + filepath.ToSlash(rel)), nil
}

// existing returns the folder at p in the stage, not following a last symlink.
func existing(root *rootfs.Root, p string) (string, fs.FileInfo, bool) {
	if root == nil {
		return "", nil, false
	}
	host, err := root.Resolve(p, false)
	if err != nil {
		return "", nil, false
	}
	fi, err := os.Lstat(host)
	if err != nil || !fi.IsDir() {
		return "", nil, false
	}
	return host, fi, true
}

// mkdirs puts p and its parents in the layer: a folder the stage has keeps
// its metadata, a new one is 0755, owned by --chown's owner or root.
func (cw *copyWriter) mkdirs(p string) error {
	if p == "/" || p == "." || cw.written[p] {
		return nil
	}
	if err := cw.mkdirs(path.Dir(p)); err != nil {
		return err
	}
	cw.written[p] = true
	e := entry{name: p, typ: tar.TypeDir, mode: 0o755, mtime: cw.b.created}
	if host, fi, ok := existing(cw.root, p); ok {
		e.mode, e.mtime = tarMode(fi.Mode()), fi.ModTime()
		e.uid, e.gid = rootSource{root: cw.root, owners: cw.s.owners}.owner(host, fi)
	} else if cw.own != nil {
		e.uid, e.gid = cw.own.uid, cw.own.gid
	}
	return cw.lw.write(e, nil)
}

// destDir writes the folder a source folder is copied into: as it is in the
// stage when it exists, else with the source folder's metadata.
func (cw *copyWriter) destDir(dest, host string, fi fs.FileInfo) error {
	if _, _, ok := existing(cw.root, dest); ok || dest == "/" {
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

package run

import (
	"context"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// CopyTree copies the file or folder src to dst (which must not exist):
// folders, regular files, symlinks as they are, with modes, owners (where
// permitted) and mtimes; devices, fifos and sockets are left out.
func CopyTree(ctx context.Context, src, dst string) error {
	type dirMeta struct {
		path string
		fi   fs.FileInfo
	}
	var dirs []dirMeta // modes and times set last: a read-only folder must still be filled
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case fi.IsDir():
			err = os.Mkdir(to, 0o700)
			dirs = append(dirs, dirMeta{to, fi})
		case fi.Mode().IsRegular():
			err = copyRegular(p, to)
		case fi.Mode()&fs.ModeSymlink != 0:
			var link string
			if link, err = os.Readlink(p); err == nil {
				err = os.Symlink(link, to)
			}
		default:
			return nil
		}
		if err != nil {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			_ = os.Lchown(to, int(st.Uid), int(st.Gid)) // as root; otherwise the copy is the caller's
		}
		if fi.Mode().IsRegular() {
			return setModeTimes(to, fi)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := setModeTimes(dirs[i].path, dirs[i].fi); err != nil {
			return err
		}
	}
	return nil
}

func setModeTimes(p string, fi fs.FileInfo) error {
	if err := os.Chmod(p, fi.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
		return err
	}
	return os.Chtimes(p, fi.ModTime(), fi.ModTime())
}

func copyRegular(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

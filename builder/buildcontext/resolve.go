package buildcontext

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
)

// maxSymlinks bounds symlink resolution, as Docker's FollowSymlinkInScope does.
const maxSymlinks = 255

// cleanRel turns a COPY-style path into a clean context-relative one: the
// root acts as "/", so "../../x" and "/x" both become "x"; the root is "".
func cleanRel(rel string) string {
	return strings.TrimPrefix(path.Clean("/"+filepath.ToSlash(rel)), "/")
}

// host is the host path of a clean, symlink-free context-relative path.
func (c *Context) host(rel string) string {
	if rel == "" {
		return c.root
	}
	return filepath.Join(c.root, filepath.FromSlash(rel))
}

// Resolve maps a context-relative source path, as written in COPY, to a host
// path inside the context root. The root acts as "/": ".." stops there,
// absolute paths and absolute symlink targets start there, and symlinks are
// followed (the last one too) without ever leaving it. A path that does not
// exist, or that .dockerignore removes, is an error matching fs.ErrNotExist
// (and ErrExcluded for the latter); a symlink loop matches syscall.ELOOP.
func (c *Context) Resolve(rel string) (string, error) {
	real, _, err := c.resolve(rel, true)
	if err != nil {
		return "", err
	}
	return c.host(real), nil
}

// resolve returns the real (symlink-free) context-relative path of rel and
// its Lstat info. With honour set, a path Docker would not send is missing.
func (c *Context) resolve(rel string, honour bool) (string, fs.FileInfo, error) {
	real, err := c.follow(rel, honour)
	if err != nil {
		return "", nil, err
	}
	fi, err := os.Lstat(c.host(real))
	if err != nil {
		return "", nil, notExist(rel, err)
	}
	if !honour || real == "" {
		return real, fi, nil
	}
	ok, err := c.present(real, fi)
	if err != nil {
		return "", nil, err
	}
	if !ok {
		return "", nil, excludedErr(rel)
	}
	return real, fi, nil
}

// follow walks rel one name at a time from the root, replacing each symlink
// by its target re-rooted at the context root.
func (c *Context) follow(rel string, honour bool) (string, error) {
	todo := strings.Split(cleanRel(rel), "/")
	done, links := "", 0
	for len(todo) > 0 {
		name := todo[0]
		todo = todo[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			done = parentRel(done)
			continue
		}
		next := joinRel(done, name)
		fi, err := os.Lstat(c.host(next))
		if err != nil {
			return "", notExist(rel, err)
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			done = next
			continue
		}
		if links++; links > maxSymlinks {
			return "", &fs.PathError{Op: "resolve", Path: rel, Err: syscall.ELOOP}
		}
		if err := c.checkLink(rel, next, honour); err != nil {
			return "", err
		}
		target, err := os.Readlink(c.host(next))
		if err != nil {
			return "", notExist(rel, err)
		}
		if path.IsAbs(target) {
			done = ""
		}
		todo = append(strings.Split(target, "/"), todo...)
	}
	return done, nil
}

// checkLink refuses to follow a symlink that .dockerignore removes.
func (c *Context) checkLink(rel, link string, honour bool) error {
	if !honour {
		return nil
	}
	excluded, err := c.Excluded(link)
	if err != nil {
		return err
	}
	if excluded {
		return excludedErr(rel)
	}
	return nil
}

func notExist(rel string, err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return &fs.PathError{Op: "resolve", Path: rel, Err: fs.ErrNotExist}
	}
	return fmt.Errorf("resolving %s: %w", rel, err)
}

func excludedErr(rel string) error {
	return &fs.PathError{Op: "resolve", Path: rel, Err: fmt.Errorf("%w: %w", ErrExcluded, fs.ErrNotExist)}
}

func joinRel(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

func parentRel(rel string) string {
	i := strings.LastIndexByte(rel, '/')
	if i < 0 {
		return ""
	}
	return rel[:i]
}

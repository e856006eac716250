package builder

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"kiln/builder/buildcontext"
	"kiln/builder/rootfs"
)

// fileSource is where COPY reads: the build context or a stage's (or an
// image's) filesystem. Paths are slash-separated, relative to its root, which
// acts as "/" for ".." and symlinks.
type fileSource interface {
	Glob(pattern string) ([]string, error)
	Resolve(rel string) (string, error)
	Walk(rel string, fn buildcontext.WalkFunc) error
	// owner is the ownership a copy keeps when no --chown is given.
	owner(host string, fi fs.FileInfo) (uid, gid int)
}

// contextSource is the build context: copies from it belong to root.
type contextSource struct{ *buildcontext.Context }

func (contextSource) owner(string, fs.FileInfo) (int, int) { return 0, 0 }

// rootSource is a stage's filesystem: copies keep their owners.
type rootSource struct {
	root   *rootfs.Root
	owners map[string]rootfs.Owner
}

func (r rootSource) Resolve(rel string) (string, error) {
	host, err := r.root.Resolve("/"+rel, true)
	if err != nil {
		return "", err
	}
	if _, err := os.Lstat(host); err != nil {
		return "", fmt.Errorf("%s: %w", rel, fs.ErrNotExist)
	}
	return host, nil
}

// Glob matches pattern one path element at a time, like the context's Glob.
func (r rootSource) Glob(pattern string) ([]string, error) {
	clean := path.Clean("/" + pattern)
	if !hasMeta(clean) {
		if _, err := r.Resolve(clean); err != nil {
			return nil, err
		}
		return []string{strings.TrimPrefix(clean, "/")}, nil
	}
	matches := []string{""}
	for _, elem := range strings.Split(strings.TrimPrefix(clean, "/"), "/") {
		var next []string
		for _, m := range matches {
			found, err := r.globElem(m, elem)
			if err != nil {
				return nil, err
			}
			next = append(next, found...)
		}
		matches = next
	}
	if len(matches) == 0 {
		return nil, fmt.Errorf("%s: %w", pattern, buildcontext.ErrNoMatch)
	}
	return matches, nil
}

// globElem lists the entries of folder dir matching elem.
func (r rootSource) globElem(dir, elem string) ([]string, error) {
	if !hasMeta(elem) {
		p := path.Join(dir, elem)
		if _, err := r.Resolve(p); err != nil {
			return nil, nil
		}
		return []string{p}, nil
	}
	host, err := r.Resolve(dir)
	if err != nil {
		return nil, nil
	}
	entries, err := os.ReadDir(host)
	if err != nil {
		return nil, nil
	}
	var out []string
	for _, e := range entries {
		if ok, err := path.Match(elem, e.Name()); err != nil {
			return nil, err
		} else if ok {
			out = append(out, path.Join(dir, e.Name()))
		}
	}
	return out, nil
}

func hasMeta(p string) bool { return strings.ContainsAny(p, `*?[\`) }

// Walk visits the entries below rel in lexical order, not following symlinks.
func (r rootSource) Walk(rel string, fn buildcontext.WalkFunc) error {
	top, err := r.Resolve(rel)
	if err != nil {
		return err
	}
	err = filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == top {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		sub, _ := filepath.Rel(top, p)
		return fn(filepath.ToSlash(sub), info)
	})
	if errors.Is(err, fs.SkipAll) {
		return nil
	}
	return err
}

func (r rootSource) owner(host string, fi fs.FileInfo) (int, int) {
	rel, err := filepath.Rel(r.root.Dir(), host)
	if err == nil {
		if o, ok := r.owners["/"+filepath.ToSlash(rel)]; ok {
			return o.UID, o.GID
		}
	}
	return statOwner(fi)
}

func statOwner(fi fs.FileInfo) (int, int) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid), int(st.Gid)
	}
	return 0, 0
}

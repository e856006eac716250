package config

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Option changes how Load and Parse read a build file.
type Option func(*options)

type options struct {
	allowed []string // folders besides the build file's own that its project paths may name
}

// AllowPathsUnder lets a build file's project paths (a context, an output;
// see the package doc) lead into dirs as well as into the file's own
// folder: the opt-in for a trusted build file that builds from or writes to
// a folder beside it. A relative dir is taken from the working directory;
// "/" allows any path. kiln's flag for it is --allow fs=DIR.
func AllowPathsUnder(dirs ...string) Option {
	return func(o *options) { o.allowed = append(o.allowed, dirs...) }
}

// allowFlag is how a kiln user passes AllowPathsUnder, for messages.
const allowFlag = "--allow fs="

// root is a folder paths may lead into, as written (made absolute and
// clean) and with its symlinks resolved.
type root struct{ clean, real string }

func newRoot(dir string) (root, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return root{}, fmt.Errorf("resolving %s: %w", dir, err)
	}
	return root{clean: abs, real: resolve(abs)}, nil
}

// pathRule says which folders a build file's project paths may lead into.
type pathRule struct {
	own     root   // the build file's folder
	allowed []root // from AllowPathsUnder
}

func newPathRule(dir string, o options) (*pathRule, error) {
	own, err := newRoot(dir)
	if err != nil {
		return nil, err
	}
	r := &pathRule{own: own}
	for _, d := range o.allowed {
		a, err := newRoot(d)
		if err != nil {
			return nil, err
		}
		r.allowed = append(r.allowed, a)
	}
	return r, nil
}

// check returns why abs, an absolute clean path, may not be used, or "".
// Both the path as written and the path its existing symlinks lead to must
// be inside an allowed folder: "ctx" in the build file's folder is refused
// if it is a symlink to /.
func (r *pathRule) check(abs string) string {
	real := r.resolve(abs)
	lexOK, realOK := false, false
	for _, rt := range append([]root{r.own}, r.allowed...) {
		lexOK = lexOK || within(abs, rt.clean)
		realOK = realOK || within(real, rt.real)
	}
	if lexOK && realOK {
		return ""
	}
	to, allow := "to "+abs, abs
	if lexOK {
		to, allow = "through a symlink to "+real, real
	}
	outside := "the build file's folder " + r.own.clean
	for _, a := range r.allowed {
		outside += " and " + a.clean
	}
	return fmt.Sprintf("leads %s, outside %s: a build file's contexts and outputs must stay inside its folder; "+
		"if you trust this one, allow the path with %s%s", to, outside, allowFlag, allow)
}

// within reports whether p is dir or inside it; both are absolute and clean.
func within(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && filepath.IsLocal(rel)
}

// resolve returns abs, an absolute clean path, with every symlink along it
// followed as far as it exists; the rest is taken as written. A path in the
// build file's folder (the usual case, and a file may name thousands)
// starts from the folder, resolved once.
func (r *pathRule) resolve(abs string) string {
	if rel, err := filepath.Rel(r.own.clean, abs); err == nil && filepath.IsLocal(rel) {
		return followLinks(r.own.real, rel)
	}
	return resolve(abs)
}

func resolve(abs string) string { return followLinks("/", abs) }

// RealPath is p made absolute with every symlink along it followed as far
// as it exists, the rest as written: where writing to p would land. kiln
// uses it to tell whether an output lies inside a build context.
func RealPath(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	return resolve(abs), nil
}

// maxLinks is where followLinks gives up, as the kernel does (ELOOP).
const maxLinks = 255

// followLinks walks path from real, a folder without symlinks, one Lstat a
// part. Unlike filepath.EvalSymlinks it follows a link to a file that does
// not exist yet, the way writing an output through it would.
func followLinks(real, path string) string {
	rest := strings.Split(path, "/")
	for links := 0; len(rest) > 0; {
		part := rest[0]
		rest = rest[1:]
		switch part {
		case "", ".":
			continue
		case "..":
			real = filepath.Dir(real)
			continue
		}
		next := filepath.Join(real, part)
		fi, err := os.Lstat(next)
		if err != nil { // not there (yet): the rest as written
			return filepath.Join(append([]string{next}, rest...)...)
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			real = next
			continue
		}
		target, err := os.Readlink(next)
		if links++; err != nil || links > maxLinks {
			return filepath.Join(append([]string{next}, rest...)...)
		}
		if filepath.IsAbs(target) {
			real = "/"
		}
		rest = append(strings.Split(target, "/"), rest...)
	}
	return real
}

// projectPath makes s, a context or output path as written in the build
// file, absolute, and refuses it if it leads outside the allowed folders.
func (v *validator) projectPath(p path, written, s string) string {
	abs := v.abs(s)
	if why := v.paths.check(abs); why != "" {
		v.addf(p, "%q %s", written, why)
	}
	return abs
}

package buildcontext

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"

	"github.com/moby/patternmatcher"
)

// WalkFunc is called by Walk for each entry, with its path relative to the
// walked folder (slash-separated) and its Lstat info. Returning fs.SkipDir
// from a folder skips its contents, from anything else the rest of its
// folder; fs.SkipAll ends the walk without error.
type WalkFunc func(rel string, info fs.FileInfo) error

// Walk visits every entry Docker would send under the context-relative folder
// rel (symlinks in rel are followed; inside it they are reported, not
// followed), in lexical order. Like BuildKit, it descends into an excluded
// folder when "!" exceptions may re-include something inside, and reports
// that folder just before its first re-included entry.
func (c *Context) Walk(rel string, fn WalkFunc) error {
	real, fi, err := c.resolve(rel, true)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return &fs.PathError{Op: "walk", Path: rel, Err: syscall.ENOTDIR}
	}
	if err := c.walk(real, fn); err != nil {
		return fmt.Errorf("walking %s: %w", rel, err)
	}
	return nil
}

// walk walks the real context-relative folder dir.
func (c *Context) walk(dir string, fn WalkFunc) error {
	_, info, err := c.ignore.matchPath(dir)
	if err != nil {
		return err
	}
	w := &walker{c: c, fn: fn}
	err = w.dir(dir, "", info, nil)
	if errors.Is(err, fs.SkipAll) {
		return nil
	}
	return err
}

type walker struct {
	c  *Context
	fn WalkFunc
}

// held is an excluded folder walked for its exceptions; it is reported only
// once something inside it is.
type held struct {
	rel      string
	info     fs.FileInfo
	reported bool
	skipped  bool // fn answered fs.SkipDir when it was reported
}

// errHeldSkipped unwinds the walk up to the held folder fn skipped.
var errHeldSkipped = errors.New("held folder skipped")

// dir walks the real context folder ctxDir, named walkDir for fn; holds ends
// with ctxDir's own record when ctxDir is excluded.
func (w *walker) dir(ctxDir, walkDir string, mi patternmatcher.MatchInfo, holds []*held) error {
	entries, err := os.ReadDir(w.c.host(ctxDir))
	if err != nil {
		return err
	}
	for _, e := range entries {
		err := w.entry(joinRel(ctxDir, e.Name()), joinRel(walkDir, e.Name()), e, mi, holds)
		switch {
		case err == nil:
		case errors.Is(err, fs.SkipDir):
			return nil // from a non-folder: skip the rest of this folder
		case errors.Is(err, errHeldSkipped) && len(holds) > 0 && holds[len(holds)-1].rel == walkDir && holds[len(holds)-1].skipped:
			return nil
		default:
			return err
		}
	}
	return nil
}

func (w *walker) entry(ctxRel, walkRel string, e fs.DirEntry, parent patternmatcher.MatchInfo, holds []*held) error {
	info, err := e.Info()
	if errors.Is(err, fs.ErrNotExist) {
		return nil // removed while we walk
	}
	if err != nil {
		return err
	}
	excluded, mi, err := w.c.ignore.match(ctxRel, parent)
	if err != nil {
		return err
	}
	if excluded {
		if !info.IsDir() || !w.c.ignore.mayReinclude(ctxRel) {
			return nil
		}
		h := &held{rel: walkRel, info: info}
		return w.dir(ctxRel, walkRel, mi, append(holds[:len(holds):len(holds)], h))
	}
	if err := w.report(holds); err != nil {
		return err
	}
	err = w.fn(walkRel, info)
	if !info.IsDir() {
		return err
	}
	if errors.Is(err, fs.SkipDir) {
		return nil
	}
	if err != nil {
		return err
	}
	return w.dir(ctxRel, walkRel, mi, holds)
}

// report calls fn for the held folders not reported yet, outermost first.
func (w *walker) report(holds []*held) error {
	for _, h := range holds {
		if h.reported {
			continue
		}
		h.reported = true
		err := w.fn(h.rel, h.info)
		if errors.Is(err, fs.SkipDir) {
			h.skipped = true
			return errHeldSkipped
		}
		if err != nil {
			return err
		}
	}
	return nil
}

package buildcontext

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// ignorer answers .dockerignore questions. patternmatcher compiles patterns
// lazily and is not safe for concurrent use, hence the mutex.
type ignorer struct {
	mu sync.Mutex
	pm *patternmatcher.PatternMatcher // nil when nothing is excluded
	// exceptions are the "!" patterns; literal reports whether none of them
	// has a wildcard before a trailing "/*" or "/**" (BuildKit's fsutil then
	// walks an excluded folder only if an exception lies under it).
	exceptions []string
	literal    bool
	// forced are context-relative paths left out whatever the patterns say
	// (Options.Exclude): the build's own outputs.
	forced []string
}

// isForced reports whether rel is, or lies under, a forced exclusion.
func (ig *ignorer) isForced(rel string) bool {
	for _, f := range ig.forced {
		if rel == f || strings.HasPrefix(rel, f+"/") {
			return true
		}
	}
	return false
}

// loadIgnore reads "<Dockerfile>.dockerignore", else ".dockerignore". For a
// Dockerfile outside the context, the first is the host file beside it.
func (c *Context) loadIgnore() (*ignorer, error) {
	if c.dockerfileHost != "" {
		name := c.dockerfileHost + ".dockerignore"
		b, err := readRegular(name)
		if err == nil {
			return parseIgnoreFile(name, b)
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("reading %s: %w", name, err)
		}
	}
	names := []string{".dockerignore"}
	if c.dockerfile != "" {
		names = append([]string{c.dockerfile + ".dockerignore"}, names...)
	}
	for _, name := range names {
		b, err := c.readFile(name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", name, err)
		}
		return parseIgnoreFile(name, b)
	}
	return &ignorer{}, nil
}

func parseIgnoreFile(name string, b []byte) (*ignorer, error) {
	ig, err := parseIgnore(b)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", name, err)
	}
	return ig, nil
}

func parseIgnore(b []byte) (*ignorer, error) {
	patterns, err := ignorefile.ReadAll(bytes.NewReader(b))
	if err != nil || len(patterns) == 0 {
		return &ignorer{}, err
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		return nil, err
	}
	ig := &ignorer{pm: pm, literal: true}
	for _, p := range pm.Patterns() {
		if !p.Exclusion() {
			continue
		}
		ig.exceptions = append(ig.exceptions, p.String())
		s := strings.TrimSuffix(strings.TrimSuffix(p.String(), "/**"), "/*")
		if strings.ContainsAny(s, `*?[\`) {
			ig.literal = false
		}
	}
	return ig, nil
}

// match is the verdict for rel given its parent's MatchInfo, as fsutil's
// walker computes it.
func (ig *ignorer) match(rel string, parent patternmatcher.MatchInfo) (bool, patternmatcher.MatchInfo, error) {
	if ig.isForced(rel) {
		return true, parent, nil
	}
	if ig.pm == nil {
		return false, parent, nil
	}
	ig.mu.Lock()
	defer ig.mu.Unlock()
	return ig.pm.MatchesUsingParentResults(rel, parent)
}

// matchPath is the verdict for rel, matching each ancestor in turn so the
// answer is the one a walk from the root reaches.
func (ig *ignorer) matchPath(rel string) (bool, patternmatcher.MatchInfo, error) {
	var (
		info     patternmatcher.MatchInfo
		excluded bool
		err      error
	)
	if rel == "" || ig.pm == nil && len(ig.forced) == 0 {
		return false, info, nil
	}
	for i := 0; i <= len(rel); i++ {
		if i < len(rel) && rel[i] != '/' {
			continue
		}
		if excluded, info, err = ig.match(rel[:i], info); err != nil {
			return false, info, err
		}
	}
	return excluded, info, nil
}

// mayReinclude reports whether an excluded folder can hold re-included
// entries and so must still be walked.
func (ig *ignorer) mayReinclude(dir string) bool {
	if len(ig.exceptions) == 0 || ig.isForced(dir) {
		return false
	}
	if !ig.literal {
		return true
	}
	for _, e := range ig.exceptions {
		if strings.HasPrefix(e+"/", dir+"/") {
			return true
		}
	}
	return false
}

// Excluded is the .dockerignore verdict for a context-relative path: true if
// the patterns exclude it. The verdict is about the path as named; it does
// not follow symlinks. An excluded folder may still hold re-included entries
// (see Walk).
func (c *Context) Excluded(rel string) (bool, error) {
	excluded, _, err := c.ignore.matchPath(cleanRel(rel))
	if err != nil {
		return false, fmt.Errorf("matching %s against .dockerignore: %w", rel, err)
	}
	return excluded, nil
}

// present reports whether Docker would send the real context path rel: it is
// not excluded, or it is a folder holding a re-included entry.
func (c *Context) present(rel string, fi fs.FileInfo) (bool, error) {
	excluded, err := c.Excluded(rel)
	if err != nil || !excluded {
		return !excluded, err
	}
	if !fi.IsDir() || !c.ignore.mayReinclude(rel) {
		return false, nil
	}
	found := false
	err = c.walk(rel, func(string, fs.FileInfo) error {
		found = true
		return fs.SkipAll
	})
	return found, err
}

package buildcontext

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
)

// Glob expands a COPY source pattern the way BuildKit does: the part before
// the first name holding a wildcard (*, ? or [) is resolved like Resolve, the
// rest is matched with path/filepath.Match against the entries below it ("*"
// never crosses "/", "**" is not special), a matched folder is not searched
// further, and excluded entries do not exist. Matches are context-relative
// slash paths in Docker's copy order: lexical, one path element at a time. A
// pattern without wildcards returns itself, cleaned, if it resolves.
// Matching nothing is an error matching ErrNoMatch and fs.ErrNotExist.
func (c *Context) Glob(pattern string) ([]string, error) {
	clean := cleanRel(pattern)
	base, rest := splitWildcards(clean)
	if rest == "" {
		if _, _, err := c.resolve(clean, true); err != nil {
			return nil, noMatch(pattern, err)
		}
		return []string{orDot(clean)}, nil
	}
	if _, err := filepath.Match(rest, ""); err != nil {
		return nil, fmt.Errorf("COPY source %q: %w", pattern, err)
	}
	real, fi, err := c.resolve(base, true)
	if err != nil {
		return nil, noMatch(pattern, err)
	}
	if !fi.IsDir() {
		return nil, noMatch(pattern, nil)
	}
	matches, err := c.globIn(real, rest)
	if err != nil {
		return nil, fmt.Errorf("COPY source %q: %w", pattern, err)
	}
	if len(matches) == 0 {
		return nil, noMatch(pattern, nil)
	}
	return matches, nil
}

// globIn matches rest against the entries under the real folder dir.
func (c *Context) globIn(dir, rest string) ([]string, error) {
	depth := strings.Count(rest, "/") + 1
	var matches []string
	err := c.walk(dir, func(rel string, info fs.FileInfo) error {
		if ok, _ := filepath.Match(rest, rel); ok {
			matches = append(matches, joinRel(dir, rel))
			if info.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if info.IsDir() && strings.Count(rel, "/")+1 >= depth {
			return fs.SkipDir // deeper names have more "/" than rest can match
		}
		return nil
	})
	return matches, err
}

// splitWildcards splits a clean path before its first name with a wildcard.
func splitWildcards(p string) (base, rest string) {
	names := strings.Split(p, "/")
	for i, name := range names {
		if hasWildcards(name) {
			return strings.Join(names[:i], "/"), strings.Join(names[i:], "/")
		}
	}
	return p, ""
}

// hasWildcards reports an unescaped *, ? or [, as BuildKit's copy does.
func hasWildcards(name string) bool {
	for i := 0; i < len(name); i++ {
		switch name[i] {
		case '\\':
			i++
		case '*', '?', '[':
			return true
		}
	}
	return false
}

func noMatch(pattern string, err error) error {
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("COPY source %q: %w", pattern, err)
	}
	return fmt.Errorf("COPY source %q: %w: %w", pattern, ErrNoMatch, fs.ErrNotExist)
}

func orDot(rel string) string {
	if rel == "" {
		return "."
	}
	return rel
}

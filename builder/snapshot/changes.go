package snapshot

import (
	"path"
	"slices"
	"strings"
)

// OCI whiteout names (image-spec layer.md).
const (
	whiteoutPrefix = ".wh."
	opaqueMarker   = ".wh..wh..opq"
)

// kind is what one layer entry says about its path.
type kind uint8

const (
	kindEntry    kind = iota // the path as it is now
	kindWhiteout             // the path was deleted
	kindOpaque               // the directory's lower contents are hidden
)

// change is one layer entry to write; rel is the path it is about
// (relative to the root), name the tar entry's name.
type change struct {
	rel  string
	name string
	kind kind
	// from, when set, is the host path the entry is read from instead of
	// rel below the writer's directory: another name of the same file, or
	// the tree below an overlay for a folder the upper directory lacks.
	from string
}

// changeSet collects a layer's entries in any order and gives them back in
// layer order.
type changeSet struct {
	byName map[string]change
}

func newChangeSet() *changeSet { return &changeSet{byName: map[string]change{}} }

// entry records that rel is written as it is now.
func (s *changeSet) entry(rel string) { s.add(change{rel: rel, name: rel, kind: kindEntry}) }

// whiteout records that rel was deleted.
func (s *changeSet) whiteout(rel string) {
	dir, base := path.Split(rel)
	s.add(change{rel: rel, name: dir + whiteoutPrefix + base, kind: kindWhiteout})
}

// opaque records that the directory rel hides its lower contents, and is
// itself written.
func (s *changeSet) opaque(rel string) {
	s.entry(rel)
	s.add(change{rel: rel, name: rel + "/" + opaqueMarker, kind: kindOpaque})
}

func (s *changeSet) add(c change) { s.byName[c.name] = c }

// withParents adds the directories above every change that are not in the
// set, so that an applier recreates them with their own metadata.
func (s *changeSet) withParents() {
	for _, c := range s.byName {
		for dir := path.Dir(c.name); dir != "."; dir = path.Dir(dir) {
			if _, ok := s.byName[dir]; ok {
				break
			}
			s.entry(dir)
		}
	}
}

// sorted returns the changes in layer order: lexical by path component, so
// parents come before their children and whiteouts among their siblings.
func (s *changeSet) sorted() []change {
	out := make([]change, 0, len(s.byName))
	for _, c := range s.byName {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b change) int { return comparePaths(a.name, b.name) })
	return out
}

// comparePaths orders slash-separated paths component by component.
func comparePaths(a, b string) int {
	for {
		ha, ta, moreA := strings.Cut(a, "/")
		hb, tb, moreB := strings.Cut(b, "/")
		if c := strings.Compare(ha, hb); c != 0 {
			return c
		}
		switch {
		case !moreA && !moreB:
			return 0
		case !moreA:
			return -1
		case !moreB:
			return 1
		}
		a, b = ta, tb
	}
}

// opaqueInstead tells whether the directory rel, which held before names
// of which gone are deleted, is written as opaque instead of with a
// whiteout each: when it saves entries and all its names are gone, never
// for the root (a layer cannot carry its metadata) nor over something
// excluded, which the marker would hide too.
func opaqueInstead(rel string, before, gone int, ex excluder) bool {
	return rel != "" && gone > 1 && gone == before && !ex.below(rel)
}

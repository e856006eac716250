package snapshot

import (
	"slices"
	"testing"
)

func TestComparePaths(t *testing.T) {
	tests := []struct {
		name string
		a, b string
		want int
	}{
		{name: "equal", a: "a/b", b: "a/b", want: 0},
		{name: "parent first", a: "a", b: "a/b", want: -1},
		{name: "child after", a: "a/b", b: "a", want: 1},
		{name: "by component, not by byte", a: "a/z", b: "a-b", want: -1},
		{name: "siblings lexical", a: "a/b", b: "a/c", want: -1},
		{name: "whiteout among siblings", a: "d/.wh.x", b: "d/a", want: -1},
		{name: "opaque marker before dot-less names", a: "d/.wh..wh..opq", b: "d/0", want: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := comparePaths(tt.a, tt.b); got != tt.want {
				t.Errorf("comparePaths(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
			}
		})
	}
}

func TestChangeSetSorted(t *testing.T) {
	s := newChangeSet()
	s.entry("b/c/file")
	s.whiteout("a/gone")
	s.opaque("b/c")
	s.entry("a-b")
	s.withParents()
	var got []string
	for _, c := range s.sorted() {
		got = append(got, c.name)
	}
	want := []string{"a", "a/.wh.gone", "a-b", "b", "b/c", "b/c/.wh..wh..opq", "b/c/file"}
	if !slices.Equal(got, want) {
		t.Errorf("sorted = %q, want %q", got, want)
	}
}

func TestOpaqueInstead(t *testing.T) {
	ex := newExcluder([]string{"/etc/hosts", "/proc"})
	tests := []struct {
		name         string
		rel          string
		before, gone int
		want         bool
	}{
		{name: "all of several names gone", rel: "var/lib/apt/lists", before: 3, gone: 3, want: true},
		{name: "one name: a whiteout is as short", rel: "var/x", before: 1, gone: 1},
		{name: "some names left", rel: "var/x", before: 3, gone: 2},
		{name: "never the root", rel: "", before: 3, gone: 3},
		{name: "not over an excluded file", rel: "etc", before: 3, gone: 3},
		{name: "a name that only starts like an excluded dir", rel: "etcetera", before: 3, gone: 3, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := opaqueInstead(tt.rel, tt.before, tt.gone, ex); got != tt.want {
				t.Errorf("opaqueInstead(%q, %d, %d) = %v, want %v", tt.rel, tt.before, tt.gone, got, tt.want)
			}
		})
	}
}

package buildcontext

import (
	"errors"
	"io/fs"
	"slices"
	"syscall"
	"testing"
)

func TestWalk(t *testing.T) {
	files := tree{
		"b/2":           "",
		"b/1":           "",
		"a/x/y":         "",
		"a.txt":         "",
		"link":          "-> b",
		"logs/drop":     "",
		"logs/keep/k":   "",
		"logs/keep/z":   "",
		".dockerignore": "logs\n!logs/keep\n",
	}
	tests := []struct {
		name, rel string
		skip      string // a path for which fn returns fs.SkipDir
		all       string // a path for which fn returns fs.SkipAll
		want      []string
		wantErr   error
	}{
		{name: "whole context, lexical order", rel: ".", want: []string{".dockerignore", "a/", "a/x/", "a/x/y", "a.txt", "b/", "b/1", "b/2", "link -> b", "logs/", "logs/keep/", "logs/keep/k", "logs/keep/z"}},
		{name: "paths are relative to the folder", rel: "a", want: []string{"x/", "x/y"}},
		{name: "a symlinked folder is followed", rel: "link", want: []string{"1", "2"}},
		{name: "excluded folder holding exceptions", rel: "logs", want: []string{"keep/", "keep/k", "keep/z"}},
		{name: "SkipDir on a folder", rel: ".", skip: "a", want: []string{".dockerignore", "a/", "a.txt", "b/", "b/1", "b/2", "link -> b", "logs/", "logs/keep/", "logs/keep/k", "logs/keep/z"}},
		{name: "SkipDir on a file skips the rest of its folder", rel: ".", skip: "b/1", want: []string{".dockerignore", "a/", "a/x/", "a/x/y", "a.txt", "b/", "b/1", "link -> b", "logs/", "logs/keep/", "logs/keep/k", "logs/keep/z"}},
		{name: "SkipDir on a held excluded folder", rel: ".", skip: "logs", want: []string{".dockerignore", "a/", "a/x/", "a/x/y", "a.txt", "b/", "b/1", "b/2", "link -> b", "logs/"}},
		{name: "SkipAll", rel: ".", all: "b/", want: []string{".dockerignore", "a/", "a/x/", "a/x/y", "a.txt", "b/"}},
		{name: "a file is not a folder", rel: "a.txt", wantErr: syscall.ENOTDIR},
		{name: "missing", rel: "nope", wantErr: fs.ErrNotExist},
		{name: "excluded", rel: "logs/drop", wantErr: ErrExcluded},
	}
	c := openTree(t, files, Options{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			err := c.Walk(tt.rel, func(p string, info fs.FileInfo) error {
				got = append(got, describe(c, tt.rel, p, info))
				switch p {
				case tt.skip:
					return fs.SkipDir
				case tt.all, tt.all[:max(len(tt.all)-1, 0)]:
					return fs.SkipAll
				}
				return nil
			})
			if !matchErr(err, tt.wantErr) {
				t.Fatalf("Walk(%q): %v, want %v", tt.rel, err, tt.wantErr)
			}
			if err == nil && !slices.Equal(got, tt.want) {
				t.Errorf("Walk(%q) = %q\nwant %q", tt.rel, got, tt.want)
			}
		})
	}
}

func TestWalkError(t *testing.T) {
	c := openTree(t, tree{"a/b": "", "c": ""}, Options{})
	boom := errors.New("boom")
	var seen []string
	err := c.Walk(".", func(p string, info fs.FileInfo) error {
		seen = append(seen, p)
		if p == "a/b" {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) || !slices.Equal(seen, []string{"a", "a/b"}) {
		t.Errorf("Walk = %v after %q; want boom after a, a/b", err, seen)
	}
}

// Context methods are used from many COPY steps at once.
func TestConcurrentUse(t *testing.T) {
	c := openTree(t, tree{".dockerignore": "*.tmp\n**/*.log\n!keep.log\n", "a/b.go": "", "a/c.tmp": "", "x.log": "", "keep.log": ""}, Options{})
	done := make(chan []string)
	for range 8 {
		go func() {
			var got []string
			c.Walk(".", func(p string, _ fs.FileInfo) error {
				got = append(got, p)
				return nil
			})
			c.Glob("*/*.go")
			c.Excluded("a/c.tmp")
			done <- got
		}()
	}
	want := []string{".dockerignore", "a", "a/b.go", "a/c.tmp", "keep.log"} // *.tmp is anchored at the root
	for range 8 {
		if got := <-done; !slices.Equal(got, want) {
			t.Errorf("Walk = %q, want %q", got, want)
		}
	}
}

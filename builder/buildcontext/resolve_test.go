package buildcontext

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestResolve(t *testing.T) {
	outside := t.TempDir()
	writeTree(t, outside, tree{"secret": "outside"})
	files := tree{
		"etc/passwd":      "context passwd",
		"app/main.go":     "package main",
		"app/link":        "-> ../etc/passwd",
		"abs-passwd":      "-> /etc/passwd",
		"abs-shadow":      "-> /etc/shadow",
		"climb":           "-> ../../../../../etc/passwd",
		"outside":         "-> " + outside + "/secret",
		"chain1":          "-> chain2",
		"chain2":          "-> app/link",
		"loop1":           "-> loop2",
		"loop2":           "-> loop1",
		"self":            "-> self",
		"appdir":          "-> /app",
		"dotdot-in-link":  "-> app/../etc/passwd",
		"link-then-up":    "-> appdir/../etc",
		"secret.key":      "excluded",
		"to-secret":       "-> secret.key",
		"hidden-link":     "-> etc/passwd",
		"docs/keep.txt":   "kept",
		"docs/drop.txt":   "dropped",
		".dockerignore":   "secret.key\nhidden-link\ndocs\n!docs/keep.txt\n",
		"empty-dir/":      "",
		"etc/hosts-alias": "-> /etc/hosts-in-context",
	}
	tests := []struct {
		name, rel string
		want      string // context-relative, "" for the root
		wantErr   error
	}{
		{name: "plain file", rel: "app/main.go", want: "app/main.go"},
		{name: "root", rel: ".", want: ""},
		{name: "empty is the root", rel: "", want: ""},
		{name: "absolute path is context-rooted", rel: "/app/main.go", want: "app/main.go"},
		{name: "../ stops at the root", rel: "../../etc/passwd", want: "etc/passwd"},
		{name: "../ in the middle", rel: "app/../../../etc/passwd", want: "etc/passwd"},
		{name: "relative symlink", rel: "app/link", want: "etc/passwd"},
		{name: "absolute symlink to /etc/passwd stays inside", rel: "abs-passwd", want: "etc/passwd"},
		{name: "absolute symlink to a missing file", rel: "abs-shadow", wantErr: fs.ErrNotExist},
		{name: "climbing symlink stays inside", rel: "climb", want: "etc/passwd"},
		{name: "symlink to an absolute host path is re-rooted", rel: "outside", wantErr: fs.ErrNotExist},
		{name: "symlink chain", rel: "chain1", want: "etc/passwd"},
		{name: "symlink loop", rel: "loop1", wantErr: syscall.ELOOP},
		{name: "symlink to itself", rel: "self", wantErr: syscall.ELOOP},
		{name: "symlinked folder in the path", rel: "appdir/main.go", want: "app/main.go"},
		{name: ".. after a symlinked folder leaves the target", rel: "appdir/../etc/passwd", want: "etc/passwd"},
		{name: ".. inside a target", rel: "dotdot-in-link", want: "etc/passwd"},
		{name: "symlink then .. in a target", rel: "link-then-up/passwd", want: "etc/passwd"},
		{name: "missing file", rel: "nope", wantErr: fs.ErrNotExist},
		{name: "file used as a folder", rel: "app/main.go/x", wantErr: fs.ErrNotExist},
		{name: "excluded file", rel: "secret.key", wantErr: ErrExcluded},
		{name: "symlink to an excluded file", rel: "to-secret", wantErr: ErrExcluded},
		{name: "excluded symlink", rel: "hidden-link", wantErr: ErrExcluded},
		{name: "excluded folder holding a re-included file", rel: "docs", want: "docs"},
		{name: "re-included file", rel: "docs/keep.txt", want: "docs/keep.txt"},
		{name: "excluded file beside it", rel: "docs/drop.txt", wantErr: ErrExcluded},
		{name: "empty folder", rel: "empty-dir/", want: "empty-dir"},
		{name: "dangling absolute symlink", rel: "etc/hosts-alias", wantErr: fs.ErrNotExist},
	}
	c := openTree(t, files, Options{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.Resolve(tt.rel)
			if !matchErr(err, tt.wantErr) {
				t.Fatalf("Resolve(%q) = %q, %v; want error %v", tt.rel, got, err, tt.wantErr)
			}
			if err != nil {
				if !strings.Contains(err.Error(), tt.rel) {
					t.Errorf("error %q does not name %q", err, tt.rel)
				}
				return
			}
			if want := c.host(tt.want); got != want {
				t.Errorf("Resolve(%q) = %s, want %s", tt.rel, got, want)
			}
			assertInside(t, c.Root(), got)
		})
	}
}

func TestResolveNeverLeavesRoot(t *testing.T) {
	outside := t.TempDir()
	writeTree(t, outside, tree{"etc/passwd": "host"})
	c := openTree(t, tree{"etc/passwd": "ctx", "up": "-> ..", "abs": "-> " + outside, "root": "-> /"}, Options{})
	for _, rel := range []string{"up/up/up/etc/passwd", "abs/etc/passwd", "root/etc/passwd", "root/../../etc/passwd", "/../etc/passwd"} {
		got, err := c.Resolve(rel)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Errorf("Resolve(%q): %v", rel, err)
			continue
		}
		assertInside(t, c.Root(), got)
		if b, _ := os.ReadFile(got); string(b) != "ctx" {
			t.Errorf("Resolve(%q) read %q, want the context's file", rel, b)
		}
	}
}

func assertInside(t *testing.T, root, p string) {
	t.Helper()
	rel, err := filepath.Rel(root, p)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") || filepath.IsAbs(rel) {
		t.Errorf("%s is outside the context root %s", p, root)
	}
	real, err := filepath.EvalSymlinks(p)
	if err == nil && real != p {
		t.Errorf("%s is not symlink-free (really %s)", p, real)
	}
}

package rootfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestResolve(t *testing.T) {
	r, _ := newRoot(t, false)
	layer := []entry{
		dir("usr/bin"), dir("usr/lib"), file("usr/lib/x", "x"), file("file", "f"),
		symlink("lib", "usr/lib"), symlink("abs", "/usr/lib"),
		symlink("chain1", "chain2"), symlink("chain2", "/abs"),
		symlink("loop1", "loop2"), symlink("loop2", "/loop1"), symlink("self", "self"),
		symlink("up", "../../../.."), symlink("dangling", "/nonexistent/x"),
		symlink("usr/bin/sibling", "../lib/x"), symlink("usr/bin/parent", ".."),
	}
	// A chain of exactly 255 hops resolves; one more is a loop.
	layer = append(layer, symlink("hops/l254", "/usr/lib"))
	for i := 253; i >= 0; i-- {
		layer = append(layer, symlink(fmt.Sprintf("hops/l%d", i), fmt.Sprintf("l%d", i+1)))
	}
	layer = append(layer, symlink("hops/l-1", "l0"))
	mustApply(t, r, layer...)

	root := r.Dir()
	tests := []struct {
		name       string
		path       string
		followLast bool
		want       string // relative to the root
		wantErr    error
	}{
		{name: "plain", path: "/usr/lib/x", want: "usr/lib/x"},
		{name: "root", path: "/", want: ""},
		{name: "empty", path: "", want: ""},
		{name: "relative is from the root", path: "usr/bin", want: "usr/bin"},
		{name: "dotdot", path: "/usr/bin/../lib/x", want: "usr/lib/x"},
		{name: "dotdot above the root", path: "/../../../usr", want: "usr"},
		{name: "relative symlink", path: "/lib/x", want: "usr/lib/x"},
		{name: "absolute symlink", path: "/abs/x", want: "usr/lib/x"},
		{name: "chain of symlinks", path: "/chain1/x", want: "usr/lib/x"},
		{name: "last symlink not followed", path: "/chain1", want: "chain1"},
		{name: "last symlink followed", path: "/chain1", followLast: true, want: "usr/lib"},
		{name: "trailing slash follows", path: "/chain1/", want: "usr/lib"},
		{name: "symlink with dotdot", path: "/usr/bin/sibling", followLast: true, want: "usr/lib/x"},
		{name: "symlink to its parent then dotdot", path: "/usr/bin/parent/../file", want: "file"},
		{name: "dotdot after a symlink is the target's parent", path: "/lib/../bin", want: "usr/bin"},
		{name: "symlink escaping with dotdots", path: "/up/etc/passwd", want: "etc/passwd"},
		{name: "dangling symlink followed", path: "/dangling", followLast: true, want: "nonexistent/x"},
		{name: "dangling symlink not followed", path: "/dangling", want: "dangling"},
		{name: "missing components kept", path: "/missing/a/b", want: "missing/a/b"},
		{name: "dotdot out of a missing component", path: "/missing/../lib/x", want: "usr/lib/x"},
		{name: "loop", path: "/loop1/x", wantErr: unix.ELOOP},
		{name: "loop last followed", path: "/loop1", followLast: true, wantErr: unix.ELOOP},
		{name: "loop last not followed", path: "/loop1", want: "loop1"},
		{name: "self loop", path: "/self/x", wantErr: unix.ELOOP},
		{name: "255 hops", path: "/hops/l0/x", want: "usr/lib/x"},
		{name: "256 hops", path: "/hops/l-1/x", wantErr: unix.ELOOP},
		{name: "file in the middle", path: "/file/x", wantErr: unix.ENOTDIR},
		{name: "file at the end", path: "/file", followLast: true, want: "file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := r.Resolve(tc.path, tc.followLast)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Resolve(%q) = %q, %v; want error %v", tc.path, got, err, tc.wantErr)
				}
				return
			}
			if want := filepath.Join(root, tc.want); err != nil || got != want {
				t.Fatalf("Resolve(%q) = %q, %v; want %q", tc.path, got, err, want)
			}
		})
	}
}

func TestOpen(t *testing.T) {
	base := t.TempDir()
	f := filepath.Join(base, "file")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(base, filepath.Join(base, "link")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		dir     string
		want    string
		wantErr bool
	}{
		{name: "directory", dir: base, want: base},
		{name: "symlink to a directory is made canonical", dir: filepath.Join(base, "link"), want: base},
		{name: "missing", dir: filepath.Join(base, "nope"), wantErr: true},
		{name: "not a directory", dir: f, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Open(tc.dir)
			if (err != nil) != tc.wantErr {
				t.Fatalf("Open: %v, wantErr %v", err, tc.wantErr)
			}
			if err == nil && r.Dir() != tc.want {
				t.Errorf("Dir() = %q, want %q", r.Dir(), tc.want)
			}
		})
	}
}

package rootfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// env is what a hostile case aims at: a directory outside the root holding
// "secret", and a name unique to this run for paths on the host itself.
type env struct {
	outside string
	marker  string
}

func TestApplyLayerHostile(t *testing.T) {
	tests := []struct {
		name    string
		lower   func(e env) []entry // applied first, must succeed
		layer   func(e env) []entry
		wantErr error // nil: must succeed; errAny: any error
		check   func(t *testing.T, root string, e env, stats *ApplyStats)
	}{
		{
			name:  "dotdot name lands inside",
			layer: func(e env) []entry { return []entry{file("../../etc/"+e.marker, "x")} },
			check: func(t *testing.T, root string, e env, stats *ApplyStats) {
				if got := readFile(t, filepath.Join(root, "etc", e.marker)); got != "x" {
					t.Errorf("content %q", got)
				}
				if !hasWarning(stats, "leads out of the root") {
					t.Errorf("no warning about the name: %q", stats.Warnings)
				}
			},
		},
		{
			name:  "deep dotdot name lands inside",
			layer: func(e env) []entry { return []entry{file(strings.Repeat("../", 30)+e.marker, "x")} },
			check: func(t *testing.T, root string, e env, _ *ApplyStats) {
				readFile(t, filepath.Join(root, e.marker))
			},
		},
		{
			name:  "dotdot in the middle lands inside",
			layer: func(e env) []entry { return []entry{file("a/../../../"+e.marker, "x")} },
			check: func(t *testing.T, root string, e env, _ *ApplyStats) {
				readFile(t, filepath.Join(root, e.marker))
			},
		},
		{
			name:  "absolute name is relative to the root",
			layer: func(e env) []entry { return []entry{file("/etc/"+e.marker, "x")} },
			check: func(t *testing.T, root string, e env, _ *ApplyStats) {
				readFile(t, filepath.Join(root, "etc", e.marker))
			},
		},
		{
			name:  "file through symlink to slash",
			layer: func(e env) []entry { return []entry{symlink("evil", "/"), file("evil/etc/"+e.marker, "x")} },
			check: func(t *testing.T, root string, e env, _ *ApplyStats) {
				readFile(t, filepath.Join(root, "etc", e.marker))
				if got := readlink(t, filepath.Join(root, "evil")); got != "/" {
					t.Errorf("evil -> %q", got)
				}
			},
		},
		{
			name:  "file through symlink to dotdots",
			layer: func(e env) []entry { return []entry{symlink("evil", "../../.."), file("evil/etc/"+e.marker, "x")} },
			check: func(t *testing.T, root string, e env, _ *ApplyStats) {
				readFile(t, filepath.Join(root, "etc", e.marker))
			},
		},
		{
			name:  "file through symlink to a host directory",
			layer: func(e env) []entry { return []entry{symlink("evil", e.outside), file("evil/secret", "pwned")} },
			check: func(t *testing.T, root string, e env, _ *ApplyStats) {
				if got := readFile(t, filepath.Join(root, e.outside, "secret")); got != "pwned" {
					t.Errorf("content %q", got)
				}
			},
		},
		{
			name:  "file whose parent is a lower symlink pointing outside",
			lower: func(e env) []entry { return []entry{symlink("p", e.outside)} },
			layer: func(e env) []entry { return []entry{file("p/secret", "pwned")} },
			check: func(t *testing.T, root string, e env, _ *ApplyStats) {
				readFile(t, filepath.Join(root, e.outside, "secret"))
			},
		},
		{
			name:  "file through dangling symlink to a host path",
			layer: func(e env) []entry { return []entry{symlink("d", e.outside+"/newdir"), file("d/f", "x")} },
			check: func(t *testing.T, root string, e env, _ *ApplyStats) {
				readFile(t, filepath.Join(root, e.outside, "newdir", "f"))
			},
		},
		{
			name:  "file replaces a symlink to a host file",
			lower: func(e env) []entry { return []entry{symlink("f", e.outside+"/secret")} },
			layer: func(e env) []entry { return []entry{file("f", "pwned")} },
			check: func(t *testing.T, root string, e env, _ *ApplyStats) {
				if got := readFile(t, filepath.Join(root, "f")); got != "pwned" {
					t.Errorf("content %q", got)
				}
			},
		},
		{
			name:  "directory replaces a symlink to a host directory",
			lower: func(e env) []entry { return []entry{symlink("d", e.outside)} },
			layer: func(e env) []entry { return []entry{dir("d"), file("d/f", "x")} },
			check: func(t *testing.T, root string, e env, _ *ApplyStats) {
				if st := lstat(t, filepath.Join(root, "d")); fileType(st) != unix.S_IFDIR {
					t.Errorf("d has type %o", fileType(st))
				}
				readFile(t, filepath.Join(root, "d", "f"))
			},
		},
		// Folders stay open between entries (dirCache): one replaced or
		// removed under them must not keep taking entries.
		{
			name: "symlink replaces a folder entries were just written in",
			layer: func(e env) []entry {
				return []entry{dir("d"), file("d/a", "a"), symlink("d", e.outside), file("d/secret", "pwned")}
			},
			check: func(t *testing.T, root string, e env, _ *ApplyStats) {
				if got := readFile(t, filepath.Join(root, e.outside, "secret")); got != "pwned" {
					t.Errorf("content %q", got)
				}
			},
		},
		{
			name: "symlink replaces the parent of a folder entries were just written in",
			layer: func(e env) []entry {
				return []entry{dir("a"), dir("a/b"), file("a/b/f", "f"), symlink("a", e.outside), file("a/b/secret", "pwned")}
			},
			check: func(t *testing.T, root string, e env, _ *ApplyStats) {
				readFile(t, filepath.Join(root, e.outside, "b", "secret"))
				assertAbsent(t, filepath.Join(root, e.outside, "b", "f"))
			},
		},
		{
			name: "whiteout removes a folder entries were just written in, a symlink takes its place",
			layer: func(e env) []entry {
				return []entry{dir("d"), file("d/a", "a"), whiteout(".wh.d"), symlink("d", e.outside), file("d/secret", "pwned")}
			},
			check: func(t *testing.T, root string, e env, _ *ApplyStats) {
				readFile(t, filepath.Join(root, e.outside, "secret"))
			},
		},
		{
			name: "file replaces a folder entries were just written in",
			layer: func(e env) []entry {
				return []entry{dir("d"), file("d/a", "a"), file("d", "now a file"), file("d/b", "b")}
			},
			wantErr: unix.ENOTDIR,
		},
		{
			name: "hardlink replaces a symlink its target goes through",
			lower: func(e env) []entry {
				return []entry{dir("etc"), file("etc/passwd", "p"), symlink("h", "/etc")}
			},
			layer:   func(e env) []entry { return []entry{hardlink("h", "h/passwd")} },
			wantErr: unix.ENOENT, // the target is looked up once the symlink is gone, as before it was followed
		},
		{
			name:    "hardlink through a symlink to a host directory",
			layer:   func(e env) []entry { return []entry{symlink("s", e.outside), hardlink("h", "s/secret")} },
			wantErr: unix.ENOENT,
			check: func(t *testing.T, root string, e env, _ *ApplyStats) {
				assertAbsent(t, filepath.Join(root, "h"))
			},
		},
		{
			name:    "hardlink target with dotdots",
			layer:   func(e env) []entry { return []entry{hardlink("h", "../outside/secret")} },
			wantErr: unix.ENOENT,
		},
		{
			name:    "hardlink target is an absolute host path",
			layer:   func(e env) []entry { return []entry{hardlink("h", e.outside+"/secret")} },
			wantErr: unix.ENOENT,
		},
		{
			name:    "hardlink to the root",
			layer:   func(e env) []entry { return []entry{hardlink("h", "../..")} },
			wantErr: ErrInvalidLayer,
		},
		{
			name:  "hardlink to a symlink to a host file links the symlink",
			layer: func(e env) []entry { return []entry{symlink("s", e.outside+"/secret"), hardlink("h", "s")} },
			check: func(t *testing.T, root string, e env, _ *ApplyStats) {
				if got := readlink(t, filepath.Join(root, "h")); got != e.outside+"/secret" {
					t.Errorf("h -> %q", got)
				}
			},
		},
		{
			name:  "hardlink replaces a symlink to a host file",
			lower: func(e env) []entry { return []entry{file("real", "r"), symlink("h", e.outside+"/secret")} },
			layer: func(e env) []entry { return []entry{hardlink("h", "real")} },
			check: func(t *testing.T, root string, e env, _ *ApplyStats) {
				if lstat(t, filepath.Join(root, "h")).Ino != lstat(t, filepath.Join(root, "real")).Ino {
					t.Error("h is not a hardlink to real")
				}
			},
		},
		{
			name:    "whiteout named .wh...",
			lower:   func(e env) []entry { return []entry{dir("d"), file("d/keep", "k"), file("keep", "k")} },
			layer:   func(e env) []entry { return []entry{whiteout("d/.wh...")} },
			wantErr: ErrInvalidLayer,
			check: func(t *testing.T, root string, e env, _ *ApplyStats) {
				readFile(t, filepath.Join(root, "d", "keep"))
				readFile(t, filepath.Join(root, "keep"))
			},
		},
		{
			name:    "whiteout named .wh..",
			lower:   func(e env) []entry { return []entry{dir("d"), file("d/keep", "k")} },
			layer:   func(e env) []entry { return []entry{whiteout("d/.wh..")} },
			wantErr: ErrInvalidLayer,
		},
		{
			name:  "whiteout with dotdots stays inside",
			lower: func(e env) []entry { return []entry{file("outside", "mine")} },
			layer: func(e env) []entry { return []entry{whiteout("../../.wh.outside"), whiteout("a/../../../.wh.secret")} },
			check: func(t *testing.T, root string, e env, _ *ApplyStats) {
				assertAbsent(t, filepath.Join(root, "outside"))
			},
		},
		{
			name:  "whiteout through a symlink to a host directory",
			layer: func(e env) []entry { return []entry{symlink("evil", e.outside), whiteout("evil/.wh.secret")} },
		},
		{
			name:  "opaque marker through a symlink to a host directory",
			layer: func(e env) []entry { return []entry{symlink("evil", e.outside), whiteout("evil/.wh..wh..opq")} },
		},
		{
			name: "device nodes are created or skipped, never fatal",
			layer: func(e env) []entry {
				return []entry{
					{name: "dev/null", typ: '3', mode: 0o666, major: 1, minor: 3},
					{name: "dev/loop0", typ: '4', mode: 0o660, major: 7},
					file("after", "still applied"),
				}
			},
			check: checkDevices,
		},
		{
			name: "huge size with short data",
			layer: func(e env) []entry {
				return []entry{file("ok", "fine"), {name: "big", typ: '0', mode: 0o644, body: "abc", size: 1 << 40}}
			},
			wantErr: errAny,
			check: func(t *testing.T, root string, e env, _ *ApplyStats) {
				assertAbsent(t, filepath.Join(root, "big"))
			},
		},
		{
			name:    "symlink loop as a parent",
			layer:   func(e env) []entry { return []entry{symlink("a", "b"), symlink("b", "/a"), file("a/f", "x")} },
			wantErr: unix.ELOOP,
		},
		{
			name: "entries for the root itself are ignored",
			layer: func(e env) []entry {
				return []entry{{name: "./", typ: '5', mode: 0o777}, {name: "/", typ: '5', mode: 0o700}, {name: "..", typ: '5'}}
			},
			check: func(t *testing.T, root string, e env, _ *ApplyStats) {
				if m := lstat(t, root).Mode & 0o7777; m != 0o755 {
					t.Errorf("root mode %o, want 755", m)
				}
			},
		},
	}
	marker := fmt.Sprintf("kiln-rootfs-escape-%d", os.Getpid())
	for _, m := range runModes() {
		for _, tc := range tests {
			t.Run(m.String()+"/"+tc.name, func(t *testing.T) {
				r, outside := newRootIn(t, m)
				e := env{outside: outside, marker: marker}
				if tc.lower != nil {
					mustApply(t, r, tc.lower(e)...)
				}
				before := snapshot(t, filepath.Dir(outside))
				stats, err := applyLayer(t, r, tc.layer(e))
				checkErr(t, err, tc.wantErr)
				assertOnlyRootChanged(t, before, snapshot(t, filepath.Dir(outside)), r.Dir())
				assertHostUntouched(t, marker)
				if tc.check != nil {
					tc.check(t, r.Dir(), e, stats)
				}
			})
		}
	}
}

// errAny stands for "some error" in wantErr.
var errAny = errors.New("any error")

func checkErr(t *testing.T, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Fatalf("ApplyLayer: %v", err)
	case want == nil:
	case err == nil:
		t.Fatalf("ApplyLayer succeeded, want error %v", want)
	case want != errAny && !errors.Is(err, want):
		t.Fatalf("ApplyLayer: %v, want %v", err, want)
	}
}

// assertOnlyRootChanged compares snapshots of the folder holding the root
// and outside, ignoring what is inside the root.
func assertOnlyRootChanged(t *testing.T, before, after, root string) {
	t.Helper()
	keep := func(s string) string {
		var out []string
		for _, l := range strings.Split(s, "\n") {
			if !strings.HasPrefix(l, root+" ") && !strings.HasPrefix(l, root+"/") {
				out = append(out, l)
			}
		}
		return strings.Join(out, "\n")
	}
	if b, a := keep(before), keep(after); a != b {
		t.Errorf("outside the root changed:\nbefore:\n%s\nafter:\n%s", b, a)
	}
}

// assertHostUntouched checks the host's own /, /etc and /tmp for the marker.
func assertHostUntouched(t *testing.T, marker string) {
	t.Helper()
	for _, p := range []string{"/" + marker, "/etc/" + marker, "/tmp/" + marker} {
		if _, err := os.Lstat(p); err == nil {
			os.RemoveAll(p)
			t.Errorf("ESCAPE: %s was written on the host", p)
		}
	}
}

func checkDevices(t *testing.T, root string, e env, stats *ApplyStats) {
	t.Helper()
	readFile(t, filepath.Join(root, "after"))
	for _, d := range []struct {
		name string
		typ  uint32
	}{{"dev/null", unix.S_IFCHR}, {"dev/loop0", unix.S_IFBLK}} {
		var st unix.Stat_t
		err := unix.Lstat(filepath.Join(root, d.name), &st)
		switch {
		case err == nil && fileType(st) != d.typ:
			t.Errorf("%s has type %o", d.name, fileType(st))
		case err == nil && d.name == "dev/null" && st.Rdev != unix.Mkdev(1, 3):
			t.Errorf("%s has rdev %x", d.name, st.Rdev)
		case err != nil && !hasWarning(stats, "/"+d.name+" not created"):
			t.Errorf("%s neither created (%v) nor warned about: %q", d.name, err, stats.Warnings)
		}
	}
}

package rootfs

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestApplyLayer(t *testing.T) {
	tests := []struct {
		name   string
		layers [][]entry
		check  func(t *testing.T, root string, privileged bool, stats *ApplyStats)
	}{
		{
			name:   "whiteout of a file",
			layers: [][]entry{{dir("etc"), file("etc/a", "a"), file("etc/b", "b")}, {whiteout("etc/.wh.a")}},
			check: func(t *testing.T, root string, _ bool, stats *ApplyStats) {
				assertTree(t, root, "etc/", "etc/b")
				if stats.Whiteouts != 1 {
					t.Errorf("Whiteouts = %d", stats.Whiteouts)
				}
			},
		},
		{
			name: "whiteout of a directory",
			layers: [][]entry{
				{dir("d"), dir("d/sub"), file("d/sub/f", "f"), file("keep", "k")},
				{whiteout(".wh.d")},
			},
			check: func(t *testing.T, root string, _ bool, _ *ApplyStats) { assertTree(t, root, "keep") },
		},
		{
			name:   "whiteout of something missing is a no-op",
			layers: [][]entry{{file("f", "f"), whiteout("nope/.wh.x"), whiteout(".wh.y"), whiteout("f/.wh.z"), whiteout("f/.wh..wh..opq")}},
			check:  func(t *testing.T, root string, _ bool, _ *ApplyStats) { assertTree(t, root, "f") },
		},
		{
			name: "opaque directory across two layers",
			layers: [][]entry{
				{dir("d"), file("d/old", "o"), dir("d/sub"), file("d/sub/old", "o"), file("other", "x")},
				{dir("d"), whiteout("d/.wh..wh..opq"), file("d/new", "n"), dir("d/sub"), file("d/sub/new", "n")},
			},
			check: func(t *testing.T, root string, _ bool, _ *ApplyStats) {
				assertTree(t, root, "d/", "d/new", "d/sub/", "d/sub/new", "other")
			},
		},
		{
			name: "opaque marker after the entries it keeps",
			layers: [][]entry{
				{dir("d"), file("d/old", "o"), dir("d/sub"), file("d/sub/old", "o")},
				{file("d/sub/new", "n"), whiteout("d/.wh..wh..opq")},
			},
			check: func(t *testing.T, root string, _ bool, _ *ApplyStats) {
				assertTree(t, root, "d/", "d/sub/", "d/sub/new")
			},
		},
		{
			name:   "hardlink inside the layer",
			layers: [][]entry{{file("a", "content"), dir("b"), hardlink("b/link", "a"), hardlink("/abs", "/a")}},
			check: func(t *testing.T, root string, _ bool, stats *ApplyStats) {
				a, l := lstat(t, filepath.Join(root, "a")), lstat(t, filepath.Join(root, "b/link"))
				if a.Ino != l.Ino || a.Nlink != 3 {
					t.Errorf("inodes %d %d, nlink %d", a.Ino, l.Ino, a.Nlink)
				}
				if stats.Hardlinks != 2 || stats.Files != 1 {
					t.Errorf("stats %+v", stats)
				}
			},
		},
		{
			name:   "hardlink to a lower layer's file",
			layers: [][]entry{{file("a", "content")}, {hardlink("b", "a")}},
			check: func(t *testing.T, root string, _ bool, _ *ApplyStats) {
				if lstat(t, filepath.Join(root, "a")).Ino != lstat(t, filepath.Join(root, "b")).Ino {
					t.Error("b is not a hardlink to a")
				}
			},
		},
		{
			name: "symlinks are kept as written, not followed",
			layers: [][]entry{{
				dir("usr/lib"), symlink("rel", "usr/lib"), symlink("abs", "/usr/lib"),
				symlink("dangling", "/nope/x"), symlink("dots", "../../../../etc"),
			}},
			check: func(t *testing.T, root string, _ bool, stats *ApplyStats) {
				for name, want := range map[string]string{"rel": "usr/lib", "abs": "/usr/lib", "dangling": "/nope/x", "dots": "../../../../etc"} {
					if got := readlink(t, filepath.Join(root, name)); got != want {
						t.Errorf("%s -> %q, want %q", name, got, want)
					}
				}
				if stats.Symlinks != 4 {
					t.Errorf("Symlinks = %d", stats.Symlinks)
				}
			},
		},
		{
			name: "modes",
			layers: [][]entry{{
				{name: "suid", typ: '0', mode: 0o4755}, {name: "sgid", typ: '0', mode: 0o2711},
				{name: "private", typ: '0', mode: 0o600}, {name: "none", typ: '0', mode: 0},
				{name: "tmp", typ: '5', mode: 0o1777}, {name: "ro", typ: '5', mode: 0o555},
				{name: "ro/f", typ: '0', mode: 0o444}, {name: "typebits", typ: '0', mode: 0o100640},
			}},
			check: func(t *testing.T, root string, _ bool, _ *ApplyStats) {
				for name, want := range map[string]uint32{
					"suid": 0o4755, "sgid": 0o2711, "private": 0o600, "none": 0,
					"tmp": 0o1777, "ro": 0o555, "ro/f": 0o444, "typebits": 0o640,
				} {
					if got := lstat(t, filepath.Join(root, name)).Mode & 0o7777; got != want {
						t.Errorf("%s: mode %o, want %o", name, got, want)
					}
				}
			},
		},
		{
			name: "a lower read-only directory can be filled",
			layers: [][]entry{
				{{name: "usr", typ: '5', mode: 0o555}, {name: "usr/lib", typ: '5', mode: 0o555}},
				{file("usr/lib/x", "x"), whiteout("usr/.wh.gone")},
			},
			check: func(t *testing.T, root string, _ bool, _ *ApplyStats) {
				readFile(t, filepath.Join(root, "usr/lib/x"))
				for _, d := range []string{"usr", "usr/lib"} {
					if m := lstat(t, filepath.Join(root, d)).Mode & 0o7777; m != 0o555 {
						t.Errorf("%s: mode %o, want 555", d, m)
					}
				}
			},
		},
		{
			name: "mtimes of files, symlinks and directories",
			layers: [][]entry{{
				{name: "d", typ: '5', mode: 0o755, mtime: time.Unix(1000, 0)},
				{name: "d/f", typ: '0', mode: 0o644, mtime: time.Unix(2000, 500)},
				{name: "d/l", typ: '2', link: "f", mtime: time.Unix(3000, 0)},
				{name: "d/sub", typ: '5', mode: 0o755, mtime: time.Unix(4000, 0)},
				{name: "d/sub/g", typ: '0', mode: 0o644, mtime: time.Unix(5000, 0)},
			}},
			check: func(t *testing.T, root string, _ bool, _ *ApplyStats) {
				for name, want := range map[string]time.Time{
					"d": time.Unix(1000, 0), "d/f": time.Unix(2000, 500), "d/l": time.Unix(3000, 0),
					"d/sub": time.Unix(4000, 0), "d/sub/g": time.Unix(5000, 0),
				} {
					st := lstat(t, filepath.Join(root, name))
					if got := time.Unix(st.Mtim.Unix()); !got.Equal(want) {
						t.Errorf("%s: mtime %v, want %v", name, got, want)
					}
				}
			},
		},
		{
			name:   "file replaces directory across layers",
			layers: [][]entry{{dir("x"), file("x/inner", "i")}, {file("x", "now a file")}},
			check: func(t *testing.T, root string, _ bool, _ *ApplyStats) {
				if got := readFile(t, filepath.Join(root, "x")); got != "now a file" {
					t.Errorf("x = %q", got)
				}
			},
		},
		{
			name:   "directory replaces file across layers",
			layers: [][]entry{{file("x", "file")}, {dir("x"), file("x/inner", "i")}},
			check:  func(t *testing.T, root string, _ bool, _ *ApplyStats) { assertTree(t, root, "x/", "x/inner") },
		},
		{
			name:   "directory merges into directory",
			layers: [][]entry{{dir("x"), file("x/a", "a")}, {{name: "x", typ: '5', mode: 0o700}, file("x/b", "b")}},
			check: func(t *testing.T, root string, _ bool, _ *ApplyStats) {
				assertTree(t, root, "x/", "x/a", "x/b")
				if m := lstat(t, filepath.Join(root, "x")).Mode & 0o7777; m != 0o700 {
					t.Errorf("x: mode %o", m)
				}
			},
		},
		{
			name:   "symlink replaces directory, and file replaces file",
			layers: [][]entry{{dir("x"), file("x/a", "a"), file("f", "old")}, {symlink("x", "/f"), file("f", "new")}},
			check: func(t *testing.T, root string, _ bool, _ *ApplyStats) {
				assertTree(t, root, "f", "x@")
				if got := readFile(t, filepath.Join(root, "f")); got != "new" {
					t.Errorf("f = %q", got)
				}
			},
		},
		{
			name:   "missing parents are made 0755",
			layers: [][]entry{{file("a/b/c", "c")}},
			check: func(t *testing.T, root string, _ bool, _ *ApplyStats) {
				for _, d := range []string{"a", "a/b"} {
					if m := lstat(t, filepath.Join(root, d)).Mode & 0o7777; m != 0o755 {
						t.Errorf("%s: mode %o", d, m)
					}
				}
			},
		},
		{
			name: "ownership",
			layers: [][]entry{{
				{name: "d", typ: '5', mode: 0o755, uid: 1234, gid: 5678},
				{name: "d/f", typ: '0', mode: 0o4755, uid: 1000, gid: 1000},
				{name: "d/l", typ: '2', link: "f", uid: 42, gid: 43},
			}},
			check: checkOwnership,
		},
		{
			name: "xattrs",
			layers: [][]entry{{
				{name: "f", typ: '0', mode: 0o644, xattrs: map[string]string{"user.kiln": "yes", "security.capability": "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"}},
				{name: "l", typ: '2', link: "f", xattrs: map[string]string{"user.onlink": "no"}},
			}},
			check: checkXattrs,
		},
		{
			name:   "fifo",
			layers: [][]entry{{{name: "p", typ: tar.TypeFifo, mode: 0o620}}},
			check: func(t *testing.T, root string, _ bool, _ *ApplyStats) {
				st := lstat(t, filepath.Join(root, "p"))
				if fileType(st) != unix.S_IFIFO || st.Mode&0o7777 != 0o620 {
					t.Errorf("p: mode %o", st.Mode)
				}
			},
		},
		{
			name:   "AUFS metadata is skipped",
			layers: [][]entry{{dir(".wh..wh.plnk"), file(".wh..wh.plnk/1.2", "x"), file("kept", "k")}},
			check: func(t *testing.T, root string, _ bool, stats *ApplyStats) {
				assertTree(t, root, "kept")
				if !hasWarning(stats, "AUFS") {
					t.Errorf("warnings %q", stats.Warnings)
				}
			},
		},
	}
	for _, m := range runModes() {
		for _, tc := range tests {
			t.Run(m.String()+"/"+tc.name, func(t *testing.T) {
				r, _ := newRootIn(t, m)
				var stats *ApplyStats
				for _, l := range tc.layers {
					stats = mustApply(t, r, l...)
				}
				tc.check(t, r.Dir(), m.privileged, stats)
			})
		}
	}
}

func checkOwnership(t *testing.T, root string, privileged bool, stats *ApplyStats) {
	t.Helper()
	want := map[string]Owner{"d": {1234, 5678}, "d/f": {1000, 1000}, "d/l": {42, 43}}
	for name, o := range want {
		st := lstat(t, filepath.Join(root, name))
		got := Owner{int(st.Uid), int(st.Gid)}
		switch {
		case privileged && got != o:
			t.Errorf("%s: owner %v, want %v", name, got, o)
		case !privileged && got != (Owner{os.Geteuid(), os.Getegid()}):
			t.Errorf("%s: owner %v, want the process's", name, got)
		case !privileged && stats.SkippedOwners["/"+name] != o:
			t.Errorf("SkippedOwners[/%s] = %v, want %v", name, stats.SkippedOwners["/"+name], o)
		}
	}
	// chown comes before chmod: setuid survives.
	if m := lstat(t, filepath.Join(root, "d/f")).Mode & 0o7777; m != 0o4755 {
		t.Errorf("d/f: mode %o", m)
	}
	if !privileged && !hasWarning(stats, "ownership of 3 entries") {
		t.Errorf("warnings %q", stats.Warnings)
	}
}

func checkXattrs(t *testing.T, root string, privileged bool, stats *ApplyStats) {
	t.Helper()
	f := filepath.Join(root, "f")
	if got := getxattr(t, f, "user.kiln"); got != "yes" && !hasWarning(stats, "user.kiln") {
		t.Errorf("user.kiln = %q, and no warning", got)
	}
	got := getxattr(t, f, "security.capability")
	switch {
	case privileged && got == "" && !hasWarning(stats, "security.capability"):
		t.Errorf("security.capability neither set nor warned about: %q", stats.Warnings)
	case !privileged && got != "":
		t.Error("security.capability set while unprivileged")
	case !privileged && !hasWarning(stats, "security.capability of /f not set: not running as root"):
		t.Errorf("warnings %q", stats.Warnings)
	}
	// user.* xattrs are not allowed on symlinks: a warning, not a failure.
	if !hasWarning(stats, "user.onlink") {
		t.Errorf("warnings %q", stats.Warnings)
	}
}

func getxattr(t *testing.T, p, attr string) string {
	t.Helper()
	buf := make([]byte, 256)
	n, err := unix.Lgetxattr(p, attr, buf)
	if err != nil {
		return ""
	}
	return string(buf[:n])
}

// assertTree checks the root holds exactly want: "d/" for a directory,
// "l@" for a symlink, other names for files.
func assertTree(t *testing.T, root string, want ...string) {
	t.Helper()
	var got []string
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		switch {
		case fi.IsDir():
			rel += "/"
		case fi.Mode()&os.ModeSymlink != 0:
			rel += "@"
		}
		got = append(got, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("tree = %q, want %q", got, want)
	}
}

func TestApplyLayerStats(t *testing.T) {
	r, _ := newRoot(t, false)
	stats := mustApply(t, r, dir("d"), file("d/a", "12345"), file("d/b", "678"), symlink("s", "d"),
		hardlink("h", "d/a"), whiteout("d/.wh.zzz"), entry{name: "p", typ: tar.TypeFifo, mode: 0o644})
	got := []any{stats.Entries, stats.Files, stats.Dirs, stats.Symlinks, stats.Hardlinks, stats.Devices, stats.Whiteouts, stats.Bytes}
	want := []any{7, 2, 1, 1, 1, 1, 1, int64(8)}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Entries Files Dirs Symlinks Hardlinks Devices Whiteouts Bytes = %v, want %v", got, want)
	}
}

func TestApplyLayerSparse(t *testing.T) {
	r, _ := newRoot(t, false)
	body := strings.Repeat("\x00", 8<<20) + "tail" + strings.Repeat("\x00", 1<<20)
	mustApply(t, r, file("lastlog", body))
	p := filepath.Join(r.Dir(), "lastlog")
	if readFile(t, p) != body {
		t.Fatal("content differs")
	}
	if st := lstat(t, p); st.Blocks*512 >= st.Size/2 {
		t.Errorf("%d bytes allocated for a %d-byte file of zeros", st.Blocks*512, st.Size)
	}
}

func TestApplyLayerStreams(t *testing.T) {
	// 16 MiB through a 128 KiB buffer: the file is never held in memory.
	r, _ := newRoot(t, false)
	const size = 16 << 20
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "big", Typeflag: tar.TypeReg, Mode: 0o644, Size: size}); err != nil {
		t.Fatal(err)
	}
	block := bytes.Repeat([]byte("kiln"), 1<<10)
	for i := 0; i < size/len(block); i++ {
		tw.Write(block)
	}
	tw.Close()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := r.ApplyLayer(context.Background(), bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if st := lstat(t, filepath.Join(r.Dir(), "big")); st.Size != size {
		t.Errorf("size %d", st.Size)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > size/8 {
		t.Errorf("%d bytes allocated to apply a %d-byte file", n, size)
	}
}

func TestApplyLayerCanceled(t *testing.T) {
	r, _ := newRoot(t, false)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := r.ApplyLayer(ctx, bytes.NewReader(layerTar(t, file("a", "a"))))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestApplyLayerWithChown(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to tell chown from no chown")
	}
	r, _ := newRoot(t, true)
	stats, err := applyLayer(t, r, []entry{{name: "f", typ: '0', mode: 0o644, uid: 7, gid: 7}}, WithChown(false))
	if err != nil {
		t.Fatal(err)
	}
	if st := lstat(t, filepath.Join(r.Dir(), "f")); st.Uid != 0 || stats.SkippedOwners["/f"] != (Owner{7, 7}) {
		t.Errorf("uid %d, skipped %v", st.Uid, stats.SkippedOwners)
	}
}

func TestApplyLayerMalformed(t *testing.T) {
	r, _ := newRoot(t, false)
	if _, err := r.ApplyLayer(context.Background(), strings.NewReader(strings.Repeat("garbage!", 100))); err == nil {
		t.Error("garbage applied")
	}
	if _, err := applyLayer(t, r, []entry{{name: "v", typ: 'V'}}); !errors.Is(err, ErrInvalidLayer) {
		t.Errorf("volume header: %v, want ErrInvalidLayer", err)
	}
}

func TestApplyLayerWarningsAreBounded(t *testing.T) {
	r, _ := newRoot(t, false)
	var entries []entry
	for i := 0; i < 3*maxWarnings; i++ {
		entries = append(entries, entry{name: fmt.Sprintf("dev/d%d", i), typ: tar.TypeChar, major: 1, minor: 3})
	}
	stats := mustApply(t, r, entries...)
	if n := len(stats.Warnings); n > maxWarnings+2 {
		t.Errorf("%d warnings", n)
	}
	if !hasWarning(stats, "more warnings not shown") {
		t.Errorf("no summary in %q", stats.Warnings[len(stats.Warnings)-1])
	}
}

func BenchmarkApplyLayer(b *testing.B) {
	var entries []entry
	for i := 0; i < 100; i++ {
		d := fmt.Sprintf("usr/share/pkg%d/doc", i)
		entries = append(entries, dir(d))
		for j := 0; j < 100; j++ {
			entries = append(entries, file(fmt.Sprintf("%s/f%d", d, j), "content"))
		}
	}
	data := layerTar(b, entries...)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dir := b.TempDir()
		r, err := Open(dir)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := r.ApplyLayer(context.Background(), bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(entries)), "entries/op")
}

// TestApplyLayerFolderLookups: a layer's folders are looked up once each
// (openat2 where the kernel has it, else the walk), then found in the
// cache by the entries that follow; KILN_NO_OPENAT2's mode never asks
// openat2.
func TestApplyLayerFolderLookups(t *testing.T) {
	var entries []entry
	for i := range 3 {
		d := fmt.Sprintf("usr/lib/d%d", i)
		entries = append(entries, dir(d))
		for j := range 10 {
			entries = append(entries, file(fmt.Sprintf("%s/f%d", d, j), "x"))
		}
	}
	haveOpenat2 := kernelHasOpenat2()
	for _, m := range runModes() {
		t.Run(m.String(), func(t *testing.T) {
			r, _ := newRootIn(t, m)
			got := mustApply(t, r, entries...).lookups
			// usr/lib is missing: walked (and made) once; each dN is
			// opened once for its files; every other entry, and the
			// fixups of the dNs at the end, hit the cache.
			want := lookupStats{cached: 32, beneath: 3, walked: 1}
			if m.walkOnly || !haveOpenat2 {
				want = lookupStats{cached: 32, walked: 4}
			}
			if got != want {
				t.Errorf("lookups %+v, want %+v", got, want)
			}
		})
	}
}

// kernelHasOpenat2 says whether this kernel (and seccomp profile) offers
// openat2; without it the openat2 mode of every suite runs the walk.
func kernelHasOpenat2() bool {
	fd, err := unix.Openat2(unix.AT_FDCWD, ".", &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC})
	if err != nil {
		return false
	}
	unix.Close(fd)
	return true
}

func TestOpenNoOpenat2(t *testing.T) {
	for _, tc := range []struct {
		env  string
		want bool
	}{{"", false}, {"0", false}, {"1", true}} {
		t.Run("KILN_NO_OPENAT2="+tc.env, func(t *testing.T) {
			t.Setenv("KILN_NO_OPENAT2", tc.env)
			r, err := Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			if r.noOpenat2 != tc.want {
				t.Fatalf("noOpenat2 = %v, want %v", r.noOpenat2, tc.want)
			}
			stats := mustApply(t, r, dir("a"), file("a/f", "f"))
			if tc.want && stats.lookups.beneath != 0 {
				t.Errorf("openat2 used: %+v", stats.lookups)
			}
		})
	}
}

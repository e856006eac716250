package rootfs

import (
	"archive/tar"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestIndexMatchesUnpack: an Index of a layer stack describes exactly the
// tree Unpack makes of it (paths, types, modes, owners, mtimes, link
// targets), for the tricky stacks of the apply tests and hostile ones;
// where Unpack refuses a stack, so does the Index.
func TestIndexMatchesUnpack(t *testing.T) {
	old := epoch.Add(-time.Hour)
	cases := map[string][][]entry{
		"plain":            {{dir("etc"), file("etc/passwd", "root:x:0:0::/root:/bin/sh\n"), symlink("bin", "usr/bin"), dir("usr"), dir("usr/bin"), file("usr/bin/sh", "#!")}},
		"implicit parents": {{file("a/b/c", "c")}},
		"whiteouts": {
			{dir("etc"), file("etc/a", "a"), file("etc/b", "b"), dir("d"), file("d/x/y", "y")},
			{whiteout("etc/.wh.a"), whiteout(".wh.d"), whiteout("nope/.wh.x")},
		},
		"opaque across layers": {
			{dir("o"), file("o/lower", "l"), dir("o/sub"), file("o/sub/deep", "d")},
			{file("o/sub/new", "n"), whiteout("o/.wh..wh..opq"), file("o/after", "a")},
		},
		"opaque first": {
			{dir("o"), file("o/lower", "l")},
			{whiteout("o/.wh..wh..opq"), file("o/new", "n")},
		},
		"file replaces folder": {{dir("x"), file("x/inner", "i")}, {file("x", "now a file")}},
		"folder replaces file": {{file("x", "file")}, {dir("x"), file("x/inner", "i")}},
		"folder metadata changes": {
			{dir("x"), file("x/a", "a")},
			{{name: "x", typ: tar.TypeDir, mode: 0o700, uid: 5, gid: 6, mtime: old}, file("x/b", "b")},
		},
		"symlink replaces folder": {{dir("x"), file("x/a", "a"), file("f", "old")}, {symlink("x", "/f"), file("f", "new")}},
		"entries through symlinked parents": {
			{dir("run"), symlink("var/run", "/run"), symlink("rel", "run"), symlink("up", "../../run")},
			{file("var/run/pid", "1"), file("rel/two", "2"), file("up/three", "3"), dir("var/run/sub")},
		},
		"names leaving the root": {{file("../../etc/x", "x"), file("/abs/y", "y"), dir("./z/../w")}},
		"hardlinks":              {{file("a", "content"), dir("b"), hardlink("b/link", "a"), hardlink("/abs", "/a")}, {hardlink("c", "b/link")}},
		"special bits and owners": {{
			{name: "s", typ: tar.TypeReg, mode: 0o4755, uid: 1000, gid: 1000},
			{name: "t", typ: tar.TypeDir, mode: 0o1777},
			{name: "g", typ: tar.TypeDir, mode: 0o2750, uid: 7, gid: 8, mtime: old},
		}},
		"fifo":                           {{{name: "p", typ: tar.TypeFifo, mode: 0o620}}},
		"aufs metadata":                  {{dir(".wh..wh.plnk"), file(".wh..wh.plnk/1.2", "x"), file("kept", "k")}},
		"symlink loop":                   {{symlink("a", "b"), symlink("b", "a")}, {file("c", "c")}},
		"file in the middle":             {{file("f", "f")}, {file("f/x", "x")}},
		"hardlink to nothing":            {{hardlink("h", "missing")}},
		"opaque marker at the root":      {{file("a/x", "x"), file("top", "t")}, {whiteout(".wh..wh..opq"), file("new", "n")}},
		"hardlink with its own metadata": {{file("a", "a"), {name: "h", typ: tar.TypeLink, link: "a", mode: 0o600, uid: 3, gid: 4, mtime: old}}},
	}
	for name, layers := range cases {
		for _, m := range runModes() {
			t.Run(name+"/"+m.String(), func(t *testing.T) {
				assertIndexMatches(t, m, layers)
			})
		}
	}
}

func assertIndexMatches(t *testing.T, m runMode, layers [][]entry) {
	t.Helper()
	r, _ := newRootIn(t, m)
	img := image(t, layers...)
	start := time.Now().Add(-time.Second)
	_, uerr := r.Unpack(context.Background(), img)
	x, xerr := NewIndex(context.Background(), img, "/etc/passwd")
	if (uerr == nil) != (xerr == nil) {
		t.Fatalf("Unpack: %v; NewIndex: %v", uerr, xerr)
	}
	if uerr != nil {
		return
	}
	onDisk, recent := map[string]string{}, map[string]bool{}
	err := filepath.Walk(r.Dir(), func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == r.Dir() {
			return err
		}
		rel, _ := filepath.Rel(r.Dir(), p)
		st := fi.Sys().(*syscall.Stat_t)
		uid, gid := int(st.Uid), int(st.Gid)
		if !m.privileged { // the owners the layers asked for
			uid, gid = -1, -1
		}
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			link, _ = os.Readlink(p)
		}
		mtime := fi.ModTime()
		if fi.IsDir() && mtime.After(start) {
			mtime = time.Time{} // the unpack's time: the index keeps the layers' (see Index)
		}
		onDisk["/"+rel] = describeEntry(fi.Mode(), uid, gid, mtime, link)
		if mtime.IsZero() {
			recent["/"+rel] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	indexed := map[string]string{}
	var walk func(p string, n *indexNode)
	walk = func(p string, n *indexNode) {
		for name, c := range n.children {
			cp := path.Join(p, name)
			uid, gid := c.UID, c.GID
			if !m.privileged {
				uid, gid = -1, -1
			}
			if c.Mode&(fs.ModeDevice|fs.ModeCharDevice) != 0 && !m.privileged {
				continue // not made without privileges
			}
			mtime := c.ModTime
			if _, ok := recent[cp]; ok {
				mtime = time.Time{}
			}
			indexed[cp] = describeEntry(c.Mode, uid, gid, mtime, c.Linkname)
			if c.Mode.IsDir() {
				walk(cp, c)
			}
		}
	}
	walk("/", x.root)
	if got, want := lines(indexed), lines(onDisk); got != want {
		t.Errorf("index and unpacked tree differ:\nindex:\n%s\nunpacked:\n%s", got, want)
	}
}

// describeEntry is what both trees must agree on. Symlink mtimes are left
// out: Unpack does not set them.
func describeEntry(mode fs.FileMode, uid, gid int, mtime time.Time, link string) string {
	s := fmt.Sprintf("%v %d:%d", mode, uid, gid)
	if mode&fs.ModeSymlink == 0 {
		s += " " + mtime.UTC().Format(time.RFC3339)
	}
	if link != "" {
		s += " -> " + link
	}
	return s
}

func lines(m map[string]string) string {
	var out []string
	for p, d := range m {
		out = append(out, p+" "+d)
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

// TestIndexResolve: paths resolved through the index's symlinks as
// Root.Resolve resolves them on disk.
func TestIndexResolve(t *testing.T) {
	img := image(t, []entry{
		dir("usr"), dir("usr/lib"), symlink("lib", "usr/lib"), symlink("abs", "/usr"), symlink("up", "../../../usr/lib"),
		symlink("loop", "loop"), file("f", "f"), symlink("dangling", "/nowhere/x"),
	})
	r, _ := newRoot(t, os.Geteuid() == 0)
	if _, err := r.Unpack(context.Background(), img); err != nil {
		t.Fatal(err)
	}
	x, err := NewIndex(context.Background(), img)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/lib", "/lib/", "/lib/.", "/f/../usr", "/lib/x", "abs/lib", "/up/a/b", "/usr/../../lib", "/dangling", "/dangling/more", "/missing/../lib", "/f", "/f/x", "/loop", "/loop/x"} {
		for _, follow := range []bool{false, true} {
			host, herr := r.Resolve(p, follow)
			got, xerr := x.Resolve(p, follow)
			if (herr == nil) != (xerr == nil) {
				t.Errorf("Resolve(%q, %v): root %v, index %v", p, follow, herr, xerr)
				continue
			}
			if herr != nil {
				continue
			}
			rel, _ := filepath.Rel(r.Dir(), host)
			if want := path.Clean("/" + filepath.ToSlash(rel)); got != want {
				t.Errorf("Resolve(%q, %v) = %q, want %q (as on disk)", p, follow, got, want)
			}
		}
	}
}

// TestIndexKeepsContent: the files named to NewIndex keep their content,
// as the last layer left it.
func TestIndexKeepsContent(t *testing.T) {
	img := image(t,
		[]entry{dir("etc"), file("etc/passwd", "old\n"), file("etc/group", "g\n")},
		[]entry{file("etc/passwd", "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n")},
	)
	x, err := NewIndex(context.Background(), img, "/etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := x.Lstat("/etc/passwd"); !ok || !strings.Contains(string(e.Data), "app:x:1000") {
		t.Errorf("/etc/passwd: %q, %v", e.Data, ok)
	}
	if e, ok := x.Lstat("/etc/group"); !ok || e.Data != nil {
		t.Errorf("/etc/group was not asked for, yet kept: %q, %v", e.Data, ok)
	}
}

package snapshot

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// step is one RUN of the corpus: run changes the tree at root, check
// looks at the layer a strategy ("walk" or "overlay") made of it.
type step struct {
	name  string
	run   func(t testing.TB, root string)
	check func(t *testing.T, strategy string, layer []layerEntry)
}

var steps = []step{
	{
		name: "create files dirs a setuid binary and a fifo",
		run: func(t testing.TB, root string) {
			mustWrite(t, filepath.Join(root, "usr/bin/new"), "new", 0o755)
			must(t, unix.Chmod(filepath.Join(root, "usr/bin/new"), 0o4755))
			must(t, os.MkdirAll(filepath.Join(root, "opt/new/sub"), 0o700))
			mustWrite(t, filepath.Join(root, "opt/new/sub/f"), "f", 0o600)
			must(t, unix.Mkfifo(filepath.Join(root, "opt/new/fifo"), 0o640))
		},
		check: func(t *testing.T, _ string, layer []layerEntry) {
			wantEntry(t, layer, "usr/bin/new", tar.TypeReg, 0o4755, "new")
			wantEntry(t, layer, "opt/new", tar.TypeDir, 0o700, "")
			wantEntry(t, layer, "opt/new/sub/f", tar.TypeReg, 0o600, "f")
			wantEntry(t, layer, "opt/new/fifo", tar.TypeFifo, 0o640, "")
			wantAbsent(t, layer, "etc/passwd", "usr/bin/tool")
			wantCount(t, layer, "whiteouts", 0, isWhiteout)
		},
	},
	{
		name: "modify content at the same size with a new mtime",
		run: func(t testing.TB, root string) {
			p := filepath.Join(root, "usr/lib/libx.so.1")
			mustWrite(t, p, "libx-two", 0)
			must(t, os.Chtimes(p, epoch.Add(time.Hour), epoch.Add(time.Hour)))
		},
		check: func(t *testing.T, _ string, layer []layerEntry) {
			e := wantEntry(t, layer, "usr/lib/libx.so.1", tar.TypeReg, 0o644, "libx-two")
			if e != nil && !e.ModTime.Equal(epoch.Add(time.Hour)) {
				t.Errorf("mtime = %v, want %v", e.ModTime, epoch.Add(time.Hour))
			}
			wantAbsent(t, layer, "usr/lib/libx.so")
		},
	},
	{
		name: "touch only",
		run: func(t testing.TB, root string) {
			must(t, os.Chtimes(filepath.Join(root, "etc/passwd"), epoch.Add(time.Minute), epoch.Add(time.Minute)))
		},
		check: func(t *testing.T, _ string, layer []layerEntry) {
			wantEntry(t, layer, "etc/passwd", tar.TypeReg, 0o644, "root:x:0:0:root:/root:/bin/sh\n")
		},
	},
	{
		name: "delete a file",
		run:  func(t testing.TB, root string) { must(t, os.Remove(filepath.Join(root, "etc/motd"))) },
		check: func(t *testing.T, _ string, layer []layerEntry) {
			wantEntry(t, layer, "etc/.wh.motd", tar.TypeReg, 0, "")
			wantCount(t, layer, "whiteouts", 1, isWhiteout)
		},
	},
	{
		name: "delete a whole dir",
		run:  func(t testing.TB, root string) { must(t, os.RemoveAll(filepath.Join(root, "var/lib/data"))) },
		check: func(t *testing.T, _ string, layer []layerEntry) {
			wantEntry(t, layer, "var/lib/.wh.data", tar.TypeReg, 0, "")
			wantCount(t, layer, "whiteouts", 1, isWhiteout)
			wantCount(t, layer, "entries below the dir", 0, func(e layerEntry) bool {
				return strings.HasPrefix(e.Name, "var/lib/data/")
			})
		},
	},
	{
		name: "replace a dir by a file",
		run: func(t testing.TB, root string) {
			must(t, os.RemoveAll(filepath.Join(root, "opt/app")))
			mustWrite(t, filepath.Join(root, "opt/app"), "now a file", 0o755)
		},
		check: func(t *testing.T, _ string, layer []layerEntry) {
			wantEntry(t, layer, "opt/app", tar.TypeReg, 0o755, "now a file")
		},
	},
	{
		name: "replace a file by a dir",
		run: func(t testing.TB, root string) {
			p := filepath.Join(root, "usr/bin/tool")
			must(t, os.Remove(p))
			must(t, os.Mkdir(p, 0o755))
			mustWrite(t, filepath.Join(p, "inside"), "in", 0o644)
		},
		check: func(t *testing.T, _ string, layer []layerEntry) {
			wantEntry(t, layer, "usr/bin/tool", tar.TypeDir, 0o755, "")
			wantEntry(t, layer, "usr/bin/tool/inside", tar.TypeReg, 0o644, "in")
		},
	},
	{
		name: "rm -rf a dir and make it again",
		run: func(t testing.TB, root string) {
			p := filepath.Join(root, "srv/old")
			must(t, os.RemoveAll(p))
			must(t, os.MkdirAll(filepath.Join(p, "sub"), 0o755))
			mustWrite(t, filepath.Join(p, "new"), "new", 0o644)
		},
		check: func(t *testing.T, strategy string, layer []layerEntry) {
			wantEntry(t, layer, "srv/old/new", tar.TypeReg, 0o644, "new")
			wantEntry(t, layer, "srv/old/sub", tar.TypeDir, 0o755, "")
			opaque := find(layer, "srv/old/"+opaqueMarker) != nil
			whiteouts := find(layer, "srv/old/.wh.f") != nil
			if strategy == "overlay" && !opaque {
				t.Errorf("no opaque marker for srv/old")
			}
			if !opaque && !whiteouts {
				t.Errorf("srv/old/f neither hidden by an opaque marker nor whiteouted")
			}
		},
	},
	{
		name: "chmod only with setuid",
		run: func(t testing.TB, root string) {
			must(t, os.Chmod(filepath.Join(root, "usr/bin/tool"), 0o700))
			must(t, os.Chmod(filepath.Join(root, "etc/passwd"), 0o644|os.ModeSetuid|os.ModeSetgid))
			must(t, os.Chmod(filepath.Join(root, "opt"), 0o711))
		},
		check: func(t *testing.T, _ string, layer []layerEntry) {
			wantEntry(t, layer, "usr/bin/tool", tar.TypeReg, 0o700, "#!/bin/sh\necho tool\n")
			wantEntry(t, layer, "etc/passwd", tar.TypeReg, 0o6644, "root:x:0:0:root:/root:/bin/sh\n")
			wantEntry(t, layer, "opt", tar.TypeDir, 0o711, "")
			wantAbsent(t, layer, "opt/app")
		},
	},
	{
		name: "chown only",
		run: func(t testing.TB, root string) {
			must(t, os.Lchown(filepath.Join(root, "home/user/.profile"), 2000, 2001))
			must(t, os.Lchown(filepath.Join(root, "usr/lib/libx.so"), 3, 4))
		},
		check: func(t *testing.T, _ string, layer []layerEntry) {
			if e := find(layer, "home/user/.profile"); e == nil || e.Uid != 2000 || e.Gid != 2001 {
				t.Errorf("home/user/.profile: %+v, want owner 2000:2001", e)
			}
			if e := find(layer, "usr/lib/libx.so"); e == nil || e.Uid != 3 || e.Gid != 4 || e.Linkname != "libx.so.1" {
				t.Errorf("usr/lib/libx.so: %+v, want a symlink owned by 3:4", e)
			}
		},
	},
	{
		name: "hardlinks created",
		run: func(t testing.TB, root string) {
			mustWrite(t, filepath.Join(root, "opt/h1"), "linked", 0o644)
			must(t, os.Link(filepath.Join(root, "opt/h1"), filepath.Join(root, "opt/h2")))
			must(t, os.Link(filepath.Join(root, "etc/motd"), filepath.Join(root, "etc/motd2")))
		},
		check: func(t *testing.T, _ string, layer []layerEntry) {
			wantEntry(t, layer, "opt/h1", tar.TypeReg, 0o644, "linked")
			if e := find(layer, "opt/h2"); e == nil || e.Typeflag != tar.TypeLink || e.Linkname != "opt/h1" {
				t.Errorf("opt/h2: %+v, want a hardlink to opt/h1", e)
			}
			wantEntry(t, layer, "etc/motd", tar.TypeReg, 0o644, "hello\n")
			if e := find(layer, "etc/motd2"); e == nil || e.Typeflag != tar.TypeLink || e.Linkname != "etc/motd" {
				t.Errorf("etc/motd2: %+v, want a hardlink to etc/motd", e)
			}
		},
	},
	{
		// Overlayfs copies up only hard/b; its other names must follow,
		// as they do for Walk, which sees the one inode change.
		name: "write one name of a lower hardlink",
		run: func(t testing.TB, root string) {
			f, err := os.OpenFile(filepath.Join(root, "hard/b"), os.O_WRONLY|os.O_APPEND, 0)
			must(t, err)
			_, err = f.WriteString(" and more")
			must(t, err)
			must(t, f.Close())
		},
		check: func(t *testing.T, _ string, layer []layerEntry) {
			wantEntry(t, layer, "hard/a", tar.TypeReg, 0o644, "shared and more")
			wantLink(t, layer, "hard/b", "hard/a")
			wantLink(t, layer, "links/c", "hard/a")
			wantEntry(t, layer, "links", tar.TypeDir, 0o755, "")
		},
	},
	{
		// With the index, the other names show the change in the step too,
		// and a second name written joins the first copy.
		name: "write two names of a lower hardlink and read the third",
		run: func(t testing.TB, root string) {
			appendTo(t, filepath.Join(root, "hard/b"), " one")
			appendTo(t, filepath.Join(root, "links/c"), " two")
			seen, err := os.ReadFile(filepath.Join(root, "hard/a"))
			must(t, err)
			mustWrite(t, filepath.Join(root, "opt/seen"), string(seen), 0o644)
		},
		check: func(t *testing.T, _ string, layer []layerEntry) {
			wantEntry(t, layer, "hard/a", tar.TypeReg, 0o644, "shared one two")
			wantLink(t, layer, "hard/b", "hard/a")
			wantLink(t, layer, "links/c", "hard/a")
			wantEntry(t, layer, "opt/seen", tar.TypeReg, 0o644, "shared one two")
		},
	},
	{
		// sed -i: a new file renamed over one name is no copy-up; the other
		// names keep the file as it was (Walk writes them too: their link
		// count changed).
		name: "replace one name of a lower hardlink by a new file",
		run: func(t testing.TB, root string) {
			mustWrite(t, filepath.Join(root, "hard/.tmp"), "replaced", 0o644)
			must(t, os.Rename(filepath.Join(root, "hard/.tmp"), filepath.Join(root, "hard/b")))
		},
		check: func(t *testing.T, _ string, layer []layerEntry) {
			wantEntry(t, layer, "hard/b", tar.TypeReg, 0o644, "replaced")
			for _, n := range []string{"hard/a", "links/c"} {
				if e := find(layer, n); e != nil && e.body != "shared" && e.Linkname != "hard/a" {
					t.Errorf("%s: %+v, want it unchanged", n, e)
				}
			}
		},
	},
	{
		name: "chmod one name of a lower hardlink and delete another",
		run: func(t testing.TB, root string) {
			must(t, os.Chmod(filepath.Join(root, "links/c"), 0o600))
			must(t, os.Remove(filepath.Join(root, "hard/a")))
		},
		check: func(t *testing.T, _ string, layer []layerEntry) {
			wantEntry(t, layer, "hard/.wh.a", tar.TypeReg, 0, "")
			wantEntry(t, layer, "hard/b", tar.TypeReg, 0o600, "shared")
			wantLink(t, layer, "links/c", "hard/b")
		},
	},
	{
		name: "write one name of a lower hardlink and delete the folder holding another",
		run: func(t testing.TB, root string) {
			mustWrite(t, filepath.Join(root, "hard/b"), "rewritten", 0)
			must(t, os.RemoveAll(filepath.Join(root, "links")))
		},
		check: func(t *testing.T, _ string, layer []layerEntry) {
			wantEntry(t, layer, "hard/a", tar.TypeReg, 0o644, "rewritten")
			wantLink(t, layer, "hard/b", "hard/a")
			wantEntry(t, layer, ".wh.links", tar.TypeReg, 0, "")
			wantAbsent(t, layer, "links/c")
		},
	},
	{
		name: "write one name of a lower hardlink and hide another below a folder made again",
		run: func(t testing.TB, root string) {
			mustWrite(t, filepath.Join(root, "hard/a"), "rewritten", 0)
			must(t, os.RemoveAll(filepath.Join(root, "links")))
			must(t, os.Mkdir(filepath.Join(root, "links"), 0o755))
		},
		check: func(t *testing.T, _ string, layer []layerEntry) {
			wantEntry(t, layer, "hard/a", tar.TypeReg, 0o644, "rewritten")
			wantLink(t, layer, "hard/b", "hard/a")
			wantAbsent(t, layer, "links/c")
		},
	},
	{
		name: "symlink retargeted",
		run: func(t testing.TB, root string) {
			p := filepath.Join(root, "usr/lib/libx.so")
			must(t, os.Remove(p))
			must(t, os.Symlink("/nowhere/libx.so.2", p))
		},
		check: func(t *testing.T, _ string, layer []layerEntry) {
			if e := find(layer, "usr/lib/libx.so"); e == nil || e.Typeflag != tar.TypeSymlink || e.Linkname != "/nowhere/libx.so.2" {
				t.Errorf("usr/lib/libx.so: %+v, want a symlink to /nowhere/libx.so.2", e)
			}
		},
	},
	{
		name: "xattrs set and changed",
		run: func(t testing.TB, root string) {
			must(t, unix.Lsetxattr(filepath.Join(root, "etc/passwd"), "user.kiln", []byte("set"), 0))
			must(t, unix.Lsetxattr(filepath.Join(root, "usr/bin/tool"), "user.origin", []byte("run"), 0))
			must(t, unix.Lsetxattr(filepath.Join(root, "opt/app/x"), "trusted.kiln", []byte{0, 1, 2, 0xff}, 0))
		},
		check: func(t *testing.T, _ string, layer []layerEntry) {
			for name, want := range map[string]string{"etc/passwd": "user.kiln", "usr/bin/tool": "user.origin", "opt/app/x": "trusted.kiln"} {
				e := find(layer, name)
				if e == nil {
					t.Errorf("%s not in the layer", name)
					continue
				}
				if _, ok := e.PAXRecords[xattrRecord+want]; !ok {
					t.Errorf("%s: PAX records %v, want %s", name, e.PAXRecords, want)
				}
				for k := range e.PAXRecords {
					if strings.Contains(k, ".overlay.") {
						t.Errorf("%s carries overlayfs's own xattr %s", name, k)
					}
				}
			}
		},
	},
	{
		name: "excluded paths untouched",
		run: func(t testing.TB, root string) {
			mustWrite(t, filepath.Join(root, "etc/hosts"), "10.1.1.1 builder\n", 0)
			must(t, os.Remove(filepath.Join(root, "etc/resolv.conf")))
			mustWrite(t, filepath.Join(root, "proc/new"), "p", 0o644)
			must(t, os.Remove(filepath.Join(root, "proc/cpuinfo")))
			must(t, os.RemoveAll(filepath.Join(root, ".kiln")))
			mustWrite(t, filepath.Join(root, "etc/motd"), "changed\n", 0)
		},
		check: func(t *testing.T, _ string, layer []layerEntry) {
			wantEntry(t, layer, "etc/motd", tar.TypeReg, 0o644, "changed\n")
			for _, e := range layer {
				n := strings.TrimSuffix(e.Name, "/")
				for _, ex := range []string{"etc/hosts", "etc/.wh.hosts", "etc/resolv.conf", "etc/.wh.resolv.conf", "proc/", ".kiln", ".wh..kiln"} {
					if n == ex || strings.HasPrefix(n, ex) && strings.HasSuffix(ex, "/") {
						t.Errorf("excluded path in the layer: %s", e.Name)
					}
				}
			}
		},
	},
	{
		name: "dir replaced by a symlink out of the root and a symlink by a dir",
		run: func(t testing.TB, root string) {
			must(t, os.RemoveAll(filepath.Join(root, "var/lib/data")))
			must(t, os.Symlink("/etc", filepath.Join(root, "var/lib/data")))
			link := filepath.Join(root, "usr/lib/libx.so")
			must(t, os.Remove(link))
			must(t, os.Mkdir(link, 0o700))
			mustWrite(t, filepath.Join(link, "inside"), "i", 0o600)
		},
		check: func(t *testing.T, _ string, layer []layerEntry) {
			if e := find(layer, "var/lib/data"); e == nil || e.Typeflag != tar.TypeSymlink || e.Linkname != "/etc" {
				t.Errorf("var/lib/data: %+v, want a symlink to /etc", e)
			}
			wantEntry(t, layer, "usr/lib/libx.so", tar.TypeDir, 0o700, "")
			wantEntry(t, layer, "usr/lib/libx.so/inside", tar.TypeReg, 0o600, "i")
			wantCount(t, layer, "entries below the symlink", 0, func(e layerEntry) bool {
				return strings.HasPrefix(e.Name, "var/lib/data/")
			})
		},
	},
	{
		name: "a dir emptied and filled with new names",
		run: func(t testing.TB, root string) {
			for _, n := range []string{"a", "b", "c"} {
				must(t, os.RemoveAll(filepath.Join(root, "var/lib/data", n)))
			}
			mustWrite(t, filepath.Join(root, "var/lib/data/fresh"), "fresh", 0o644)
		},
		check: func(t *testing.T, strategy string, layer []layerEntry) {
			wantEntry(t, layer, "var/lib/data/fresh", tar.TypeReg, 0o644, "fresh")
			if strategy == "walk" {
				wantEntry(t, layer, "var/lib/data/"+opaqueMarker, tar.TypeReg, 0, "")
				wantCount(t, layer, "whiteouts", 1, isWhiteout)
			}
		},
	},
	{
		name: "etc emptied around excluded files",
		run: func(t testing.TB, root string) {
			for _, n := range []string{"passwd", "motd", "hosts", "resolv.conf"} {
				must(t, os.Remove(filepath.Join(root, "etc", n)))
			}
		},
		check: func(t *testing.T, _ string, layer []layerEntry) {
			if got := strings.Join(entryNames(layer), ","); got != "etc,etc/.wh.motd,etc/.wh.passwd" {
				t.Errorf("layer %s, want etc and whiteouts of motd and passwd only", got)
			}
		},
	},
	{
		name: "long and odd names",
		run: func(t testing.TB, root string) {
			long := strings.Repeat("long-name-", 20)
			must(t, os.MkdirAll(filepath.Join(root, "opt", long, long), 0o755))
			mustWrite(t, filepath.Join(root, "opt", long, long, "file"), "deep", 0o644)
			mustWrite(t, filepath.Join(root, "opt/with space\nand newline"), "odd", 0o644)
			mustWrite(t, filepath.Join(root, "opt/caf\xe9-latin1"), "not utf-8", 0o644)
			mustWrite(t, filepath.Join(root, "opt/café"), "utf-8", 0o644)
			must(t, os.Remove(filepath.Join(root, "srv/old/f")))
		},
		check: func(t *testing.T, _ string, layer []layerEntry) {
			long := strings.Repeat("long-name-", 20)
			wantEntry(t, layer, "opt/"+long+"/"+long+"/file", tar.TypeReg, 0o644, "deep")
			wantEntry(t, layer, "opt/with space\nand newline", tar.TypeReg, 0o644, "odd")
			wantEntry(t, layer, "opt/caf\xe9-latin1", tar.TypeReg, 0o644, "not utf-8")
			wantEntry(t, layer, "srv/old/.wh.f", tar.TypeReg, 0, "")
		},
	},
	{
		name: "a large file and device nodes",
		run: func(t testing.TB, root string) {
			mustWrite(t, filepath.Join(root, "opt/big"), strings.Repeat("0123456789abcdef", 1<<18), 0o644) // 4 MiB
			must(t, unix.Mknod(filepath.Join(root, "opt/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
			must(t, unix.Mknod(filepath.Join(root, "opt/loop9"), unix.S_IFBLK|0o660, int(unix.Mkdev(7, 9))))
		},
		check: func(t *testing.T, _ string, layer []layerEntry) {
			if e := find(layer, "opt/big"); e == nil || e.Size != 4<<20 || len(e.body) != 4<<20 {
				t.Errorf("opt/big: %v, want 4 MiB", e)
			}
			if e := find(layer, "opt/null"); e == nil || e.Typeflag != tar.TypeChar || e.Devmajor != 1 || e.Devminor != 3 {
				t.Errorf("opt/null: %+v, want char 1,3", e)
			}
			if e := find(layer, "opt/loop9"); e == nil || e.Typeflag != tar.TypeBlock || e.Devmajor != 7 || e.Devminor != 9 {
				t.Errorf("opt/loop9: %+v, want block 7,9", e)
			}
		},
	},
	{
		name: "nothing changed",
		run:  func(testing.TB, string) {},
		check: func(t *testing.T, _ string, layer []layerEntry) {
			if len(layer) != 0 {
				t.Errorf("layer of no change holds %q", entryNames(layer))
			}
		},
	},
}

// stepNamed returns the corpus step called name.
func stepNamed(t testing.TB, name string) step {
	for _, s := range steps {
		if s.name == name {
			return s
		}
	}
	t.Fatalf("no step %q", name)
	return step{}
}

func isWhiteout(e layerEntry) bool { return strings.Contains(e.Name, whiteoutPrefix) }

// wantEntry asserts the layer holds name with that type, mode and content.
func wantEntry(t *testing.T, layer []layerEntry, name string, typ byte, mode int64, body string) *layerEntry {
	t.Helper()
	e := find(layer, name)
	switch {
	case e == nil:
		t.Errorf("%s not in the layer %q", name, entryNames(layer))
	case e.Typeflag != typ || e.Mode != mode || e.body != body:
		t.Errorf("%s: type %q mode %o body %q, want %q %o %q", name, e.Typeflag, e.Mode, e.body, typ, mode, body)
	}
	return e
}

// appendTo appends text to the file p.
func appendTo(t testing.TB, p, text string) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	must(t, err)
	_, err = f.WriteString(text)
	must(t, err)
	must(t, f.Close())
}

// wantLink asserts the layer holds name as a hardlink to target.
func wantLink(t *testing.T, layer []layerEntry, name, target string) {
	t.Helper()
	if e := find(layer, name); e == nil || e.Typeflag != tar.TypeLink || e.Linkname != target {
		t.Errorf("%s: %+v, want a hardlink to %s", name, e, target)
	}
}

func wantAbsent(t *testing.T, layer []layerEntry, names ...string) {
	t.Helper()
	for _, n := range names {
		if find(layer, n) != nil {
			t.Errorf("%s is in the layer but did not change", n)
		}
	}
}

func wantCount(t *testing.T, layer []layerEntry, what string, want int, match func(layerEntry) bool) {
	t.Helper()
	n := 0
	for _, e := range layer {
		if match(e) {
			n++
		}
	}
	if n != want {
		t.Errorf("%d %s in the layer %q, want %d", n, what, entryNames(layer), want)
	}
}

// TestSnapshot runs every step under both strategies and checks the key
// property: applying the layer to a copy of the tree before the step gives
// the tree after it, so the two strategies agree.
func TestSnapshot(t *testing.T) {
	opts := Options{Exclude: testExclude}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			want := afterStep(t, s)
			wantKept, _ := split(want, testExclude)
			_, baseExcluded := split(describe(t, baseDir(t)), testExclude)
			replays := map[string]map[string]string{}
			for _, strategy := range []string{"walk", "overlay"} {
				t.Run(strategy, func(t *testing.T) {
					layer, root := snapshotStep(t, strategy, s, opts)
					entries := readLayer(t, layer)
					checkOrder(t, entries)
					s.check(t, strategy, entries)
					replay := baseDir(t)
					apply(t, replay, layer)
					got := describe(t, replay)
					replays[strategy] = got
					checkTree(t, "layer applied to the tree before", got, wantKept, baseExcluded)
					if strategy == "overlay" {
						checkTree(t, "root after Diff", describe(t, root), wantKept, baseExcluded)
					}
				})
			}
			if w, o := replays["walk"], replays["overlay"]; w != nil && o != nil {
				if diff := diffTrees(o, w); diff != "" {
					t.Errorf("walk and overlay layers give different trees (overlay vs walk):\n%s", diff)
				}
			}
		})
	}
}

// afterStep describes the tree after the step, run on a plain directory.
func afterStep(t *testing.T, s step) map[string]string {
	dir := baseDir(t)
	s.run(t, dir)
	return describe(t, dir)
}

// checkTree asserts a tree has the step's kept paths and the base's
// excluded ones.
func checkTree(t *testing.T, what string, got, wantKept, wantExcluded map[string]string) {
	t.Helper()
	kept, excluded := split(got, testExclude)
	if diff := diffTrees(kept, wantKept); diff != "" {
		t.Errorf("%s differs from the tree after the step:\n%s", what, diff)
	}
	if diff := diffTrees(excluded, wantExcluded); diff != "" {
		t.Errorf("%s: excluded paths changed:\n%s", what, diff)
	}
}

// snapshotStep runs the step on a fresh base tree with the strategy and
// returns the layer and the root.
func snapshotStep(t *testing.T, strategy string, s step, opts Options) ([]byte, string) {
	t.Helper()
	ctx := context.Background()
	root := baseDir(t)
	var buf bytes.Buffer
	var stats *Stats
	var err error
	switch strategy {
	case "walk":
		w := NewWalk(root, opts)
		must(t, w.Before(ctx))
		s.run(t, root)
		stats, err = w.Diff(ctx, &buf)
	case "overlay":
		o := mountOverlayForTest(t, root, opts)
		merged, merr := o.Mount(ctx)
		must(t, merr)
		s.run(t, merged)
		stats, err = o.Diff(ctx, &buf)
	}
	if err != nil {
		t.Fatalf("%s Diff: %v", strategy, err)
	}
	if len(stats.Warnings) > 0 {
		t.Errorf("%s Diff warned: %q", strategy, stats.Warnings)
	}
	t.Logf("%s: %+v", strategy, *stats)
	return buf.Bytes(), root
}

// mountOverlayForTest returns an Overlay of root, skipping the test where
// overlay mounts are refused; the overlay is unmounted when the test ends.
func mountOverlayForTest(t testing.TB, root string, opts Options) *Overlay {
	t.Helper()
	if ok, why := Supported(); !ok {
		t.Skipf("overlay snapshots not supported here: %s", why)
	}
	o, err := NewOverlay(root, t.TempDir(), opts)
	must(t, err)
	t.Cleanup(func() {
		if err := o.Close(); err != nil {
			t.Error(err)
		}
	})
	return o
}

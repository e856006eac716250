package snapshot

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"kiln/builder/rootfs"

	"golang.org/x/sys/unix"
)

// epoch is the mtime of every path of the base tree, as an unpacked image's.
var epoch = time.Unix(1_600_000_000, 0)

// testExclude is what every case excludes, as a RUN would: /proc, the
// bind-mounted resolver files and the builder's own directory.
var testExclude = []string{"/proc", "/etc/resolv.conf", "/etc/hosts", "/.kiln"}

// node is one path of a fixture tree.
type node struct {
	path   string
	typ    byte // tar.TypeDir, TypeReg, TypeSymlink, TypeLink
	body   string
	mode   os.FileMode
	uid    int
	gid    int
	xattrs map[string]string
}

func d(p string) node                  { return node{path: p, typ: tar.TypeDir, mode: 0o755} }
func f(p, body string) node            { return node{path: p, typ: tar.TypeReg, body: body, mode: 0o644} }
func sym(p, target string) node        { return node{path: p, typ: tar.TypeSymlink, body: target} }
func hard(p, target string) node       { return node{path: p, typ: tar.TypeLink, body: target} }
func (n node) perm(m os.FileMode) node { n.mode = m; return n }
func (n node) owner(uid, gid int) node { n.uid, n.gid = uid, gid; return n }
func (n node) xattr(k, v string) node  { n.xattrs = map[string]string{k: v}; return n }

// baseTree is the tree every case starts from.
var baseTree = []node{
	d("etc"), f("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"), f("etc/motd", "hello\n"),
	f("etc/hosts", "127.0.0.1 localhost\n"), f("etc/resolv.conf", "nameserver 10.0.0.1\n"),
	d("usr"), d("usr/bin"), f("usr/bin/tool", "#!/bin/sh\necho tool\n").perm(0o755).xattr("user.origin", "base"),
	f("usr/bin/su", "su").perm(0o4755), d("usr/lib"), f("usr/lib/libx.so.1", "libx-one"),
	sym("usr/lib/libx.so", "libx.so.1"),
	d("var"), d("var/lib"), d("var/lib/data"),
	d("var/lib/data/a"), f("var/lib/data/a/f1", "a1"), f("var/lib/data/a/f2", "a2"),
	d("var/lib/data/b"), f("var/lib/data/b/f1", "b1"), d("var/lib/data/c"),
	d("home"), d("home/user").perm(0o750).owner(1000, 1000), f("home/user/.profile", "PS1=$\n").owner(1000, 1000),
	d("opt"), d("opt/app"), f("opt/app/x", "x"), f("opt/app/y", "y"),
	d("srv"), d("srv/old"), f("srv/old/f", "old f"), d("srv/old/sub"), f("srv/old/sub/g", "old g"),
	d("hard"), f("hard/a", "shared"), hard("hard/b", "hard/a"), d("links"), hard("links/c", "hard/a"),
	d("proc"), f("proc/cpuinfo", "cpu"), d(".kiln"), f(".kiln/state", "kiln"),
	d("tmp").perm(0o1777),
}

// makeTree builds nodes under dir, every mtime at epoch.
func makeTree(t testing.TB, dir string, nodes []node) {
	t.Helper()
	for _, n := range nodes {
		p := filepath.Join(dir, n.path)
		var err error
		switch n.typ {
		case tar.TypeDir:
			err = os.Mkdir(p, n.mode)
		case tar.TypeReg:
			err = os.WriteFile(p, []byte(n.body), n.mode)
		case tar.TypeSymlink:
			err = os.Symlink(n.body, p)
		case tar.TypeLink:
			err = os.Link(filepath.Join(dir, n.body), p)
		}
		if err == nil && n.typ != tar.TypeLink {
			err = os.Lchown(p, n.uid, n.gid)
		}
		if err == nil && (n.typ == tar.TypeDir || n.typ == tar.TypeReg) {
			err = unix.Chmod(p, uint32(n.mode)) // past the umask, and after chown cleared setuid
		}
		for k, v := range n.xattrs {
			if err == nil {
				err = unix.Lsetxattr(p, k, []byte(v), 0)
			}
		}
		if err != nil {
			t.Fatalf("making %s: %v", n.path, err)
		}
	}
	setTimes(t, dir, epoch)
}

// setTimes gives every path below dir (and dir) the mtime at, deepest first.
func setTimes(t testing.TB, dir string, at time.Time) {
	t.Helper()
	var paths []string
	err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		paths = append(paths, p)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := []unix.Timespec{unix.NsecToTimespec(at.UnixNano()), unix.NsecToTimespec(at.UnixNano())}
	for _, p := range slices.Backward(paths) {
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			t.Fatal(err)
		}
	}
}

// baseDir returns a new directory holding baseTree.
func baseDir(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the corpus needs root: ownership, device nodes, mounts")
	}
	dir := t.TempDir()
	makeTree(t, dir, baseTree)
	return dir
}

// describe maps every path below dir to what the property compares: type,
// mode, owner, size, content hash, link target, xattrs and, for hardlinks,
// the first path of the tree sharing the inode. Directory sizes and mtimes
// are left out (filesystem- and strategy-specific).
func describe(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	firstOfInode := map[uint64]string{}
	err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel := filepath.ToSlash(strings.TrimPrefix(p, dir+"/"))
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		line := fmt.Sprintf("%o %d:%d", st.Mode, st.Uid, st.Gid)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			body, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			line += fmt.Sprintf(" %d %x", st.Size, sha256.Sum256(body))
		case unix.S_IFLNK:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			line = fmt.Sprintf("link %d:%d -> %s", st.Uid, st.Gid, target)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR && st.Nlink > 1 {
			if first, ok := firstOfInode[st.Ino]; ok {
				line += " same-inode-as " + first
			} else {
				firstOfInode[st.Ino] = rel
			}
		}
		attrs, err := readXattrs(p)
		if err != nil {
			return err
		}
		for _, k := range slices.Sorted(maps.Keys(attrs)) {
			line += fmt.Sprintf(" %s=%q", k, attrs[k])
		}
		out[rel] = line
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// split separates a description into the paths kept and those excluded.
func split(desc map[string]string, exclude []string) (kept, excluded map[string]string) {
	ex := newExcluder(exclude)
	kept, excluded = map[string]string{}, map[string]string{}
	for rel, line := range desc {
		if underExcluded(ex, rel) {
			excluded[rel] = line
		} else {
			kept[rel] = line
		}
	}
	return kept, excluded
}

func underExcluded(ex excluder, rel string) bool {
	for p := rel; p != "." && p != "/"; p = path.Dir(p) {
		if ex.excluded(p) {
			return true
		}
	}
	return false
}

// diffTrees reports how two descriptions differ, "" when they do not.
func diffTrees(got, want map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if got[k] != want[k] {
			fmt.Fprintf(&b, "  %s:\n    got  %q\n    want %q\n", k, got[k], want[k])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			fmt.Fprintf(&b, "  %s: unexpected %q\n", k, got[k])
		}
	}
	return b.String()
}

// apply applies layer to dir with builder/rootfs.
func apply(t testing.TB, dir string, layer []byte) {
	t.Helper()
	r, err := rootfs.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	stats, err := r.ApplyLayer(context.Background(), bytes.NewReader(layer))
	if err != nil {
		t.Fatalf("applying the layer: %v", err)
	}
	if len(stats.Warnings) > 0 {
		t.Errorf("applying the layer warned: %q", stats.Warnings)
	}
}

// layerEntry is one tar entry, with its content.
type layerEntry struct {
	*tar.Header
	body string
}

// readLayer lists a layer's entries in order.
func readLayer(t testing.TB, layer []byte) []layerEntry {
	t.Helper()
	var out []layerEntry
	tr := tar.NewReader(bytes.NewReader(layer))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("reading the layer: %v", err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, layerEntry{Header: hdr, body: string(body)})
	}
}

// entryNames are the entries' names without a directory's trailing "/".
func entryNames(entries []layerEntry) []string {
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = strings.TrimSuffix(e.Name, "/")
	}
	return names
}

// find returns the entry named name ("dir" finds "dir/"), nil if none.
func find(entries []layerEntry, name string) *layerEntry {
	for i, e := range entries {
		if strings.TrimSuffix(e.Name, "/") == name {
			return &entries[i]
		}
	}
	return nil
}

// checkOrder asserts the layer is in lexical component order with every
// entry's directory written before it.
func checkOrder(t *testing.T, entries []layerEntry) {
	t.Helper()
	names := entryNames(entries)
	written := map[string]bool{}
	for i, n := range names {
		if i > 0 && comparePaths(names[i-1], n) >= 0 {
			t.Errorf("entry %q after %q: not in order", n, names[i-1])
		}
		if dir := path.Dir(n); dir != "." && !written[dir] {
			t.Errorf("entry %q before (or without) its directory", n)
		}
		written[n] = true
	}
}

// mustWrite and friends are the commands a RUN would use.
func mustWrite(t testing.TB, p, body string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(p, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

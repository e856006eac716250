package rootfs

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// epoch is the mtime test entries get unless they say otherwise.
var epoch = time.Unix(1_600_000_000, 0)

// entry is one tar entry of a layer built by a test.
type entry struct {
	name         string
	typ          byte
	body         string
	link         string
	mode         int64
	uid, gid     int
	mtime        time.Time
	xattrs       map[string]string
	size         int64 // declared size, when it must differ from len(body)
	major, minor int64
}

func file(name, body string) entry {
	return entry{name: name, typ: tar.TypeReg, body: body, mode: 0o644}
}
func dir(name string) entry { return entry{name: name, typ: tar.TypeDir, mode: 0o755} }
func symlink(name, target string) entry {
	return entry{name: name, typ: tar.TypeSymlink, link: target, mode: 0o777}
}
func hardlink(name, target string) entry {
	return entry{name: name, typ: tar.TypeLink, link: target, mode: 0o644}
}
func whiteout(name string) entry { return entry{name: name, typ: tar.TypeReg} }

func (e entry) header() *tar.Header {
	mtime := e.mtime
	if mtime.IsZero() {
		mtime = epoch
	}
	hdr := &tar.Header{
		Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: e.mode,
		Uid: e.uid, Gid: e.gid, ModTime: mtime, Devmajor: e.major, Devminor: e.minor,
		Format: tar.FormatPAX,
	}
	if e.typ == tar.TypeReg {
		hdr.Size = int64(len(e.body))
	}
	if e.size != 0 {
		hdr.Size = e.size
	}
	for k, v := range e.xattrs {
		if hdr.PAXRecords == nil {
			hdr.PAXRecords = map[string]string{}
		}
		hdr.PAXRecords["SCHILY.xattr."+k] = v
	}
	return hdr
}

// layerTar builds a layer. An entry whose declared size exceeds its body
// leaves the tar truncated right there, as a hostile or broken layer would.
func layerTar(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		if err := tw.WriteHeader(e.header()); err != nil {
			t.Fatalf("tar header %s: %v", e.name, err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatalf("tar body %s: %v", e.name, err)
		}
		if e.size > int64(len(e.body)) {
			return buf.Bytes()
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// privileges are the modes tests run in: both when the test runs as root
// (WithPrivileged(false) pretends otherwise), unprivileged only otherwise.
func privileges() []bool {
	if os.Geteuid() == 0 {
		return []bool{true, false}
	}
	return []bool{false}
}

func privName(privileged bool) string {
	if privileged {
		return "root"
	}
	return "unprivileged"
}

// runMode is one way the suites run a Root: as root or not, and finding
// folders with openat2 where the kernel has it or by the walk alone, as on
// a kernel without it (KILN_NO_OPENAT2).
type runMode struct{ privileged, walkOnly bool }

// runModes are every privilege (see privileges) with both ways of finding
// folders.
func runModes() []runMode {
	var out []runMode
	for _, p := range privileges() {
		out = append(out, runMode{privileged: p}, runMode{privileged: p, walkOnly: true})
	}
	return out
}

func (m runMode) String() string { return privName(m.privileged) + "/" + resolverName(m.walkOnly) }

// newRootIn is newRoot in the mode m.
func newRootIn(t *testing.T, m runMode) (r *Root, outside string) {
	t.Helper()
	r, outside = newRoot(t, m.privileged)
	r.noOpenat2 = m.walkOnly
	return r, outside
}

// newRoot makes base/root, the root, and base/outside holding a file
// "secret": what a hostile layer must never reach.
func newRoot(t *testing.T, privileged bool) (r *Root, outside string) {
	t.Helper()
	base := t.TempDir()
	outside = filepath.Join(base, "outside")
	mustMkdir(t, filepath.Join(base, "root"))
	mustMkdir(t, outside)
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := Open(filepath.Join(base, "root"), WithPrivileged(privileged))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { makeRemovable(r.Dir()) })
	return r, outside
}

// makeRemovable lets a non-root t.TempDir cleanup delete read-only directories.
func makeRemovable(dir string) {
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.IsDir() {
			os.Chmod(p, 0o755)
		}
		return nil
	})
}

func mustMkdir(t *testing.T, p string) {
	t.Helper()
	if err := os.Mkdir(p, 0o755); err != nil {
		t.Fatal(err)
	}
}

func applyLayer(t testing.TB, r *Root, entries []entry, opts ...ApplyOption) (*ApplyStats, error) {
	t.Helper()
	return r.ApplyLayer(context.Background(), bytes.NewReader(layerTar(t, entries...)), opts...)
}

func mustApply(t testing.TB, r *Root, entries ...entry) *ApplyStats {
	t.Helper()
	stats, err := applyLayer(t, r, entries)
	if err != nil {
		t.Fatalf("ApplyLayer: %v", err)
	}
	return stats
}

func lstat(t testing.TB, p string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatalf("lstat: %v", err)
	}
	return st
}

func fileType(st unix.Stat_t) uint32 { return st.Mode & unix.S_IFMT }

func readFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

func readlink(t testing.TB, p string) string {
	t.Helper()
	s, err := os.Readlink(p)
	if err != nil {
		t.Fatalf("readlink: %v", err)
	}
	return s
}

func assertAbsent(t testing.TB, p string) {
	t.Helper()
	if _, err := os.Lstat(p); !os.IsNotExist(err) {
		t.Errorf("%s exists (err %v), want absent", p, err)
	}
}

func hasWarning(stats *ApplyStats, substr string) bool {
	for _, w := range stats.Warnings {
		if strings.Contains(w, substr) {
			return true
		}
	}
	return false
}

// snapshot describes every file under dir (type, mode, owner, links,
// size, mtime, content or target), to prove a tree was not touched.
func snapshot(t testing.TB, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		line := fmt.Sprintf("%s %o %d:%d n%d %d %d", p, st.Mode, st.Uid, st.Gid, st.Nlink, st.Size, fi.ModTime().UnixNano())
		switch {
		case fi.Mode().IsRegular():
			line += " " + readFile(t, p)
		case fi.Mode()&os.ModeSymlink != 0:
			line += " -> " + readlink(t, p)
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

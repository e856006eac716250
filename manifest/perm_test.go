package manifest

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"
)

func TestPermsFor(t *testing.T) {
	tests := []struct {
		name string
		mode fs.FileMode
		want perms
	}{
		{name: "private", mode: fs.ModeDir | 0o700, want: perms{dir: 0o755, file: 0o644}},
		{name: "plain", mode: fs.ModeDir | 0o755, want: perms{dir: 0o755, file: 0o644}},
		{name: "group-writable", mode: fs.ModeDir | 0o770, want: perms{dir: 0o775, file: 0o664}},
		{name: "fsGroup volume", mode: fs.ModeDir | fs.ModeSetgid | 0o775, want: perms{dir: fs.ModeSetgid | 0o775, file: 0o664}},
		{name: "setgid, not group-writable", mode: fs.ModeDir | fs.ModeSetgid | 0o755, want: perms{dir: 0o755, file: 0o644}},
		{name: "sticky scratch folder", mode: fs.ModeDir | fs.ModeSticky | 0o777, want: perms{dir: 0o755, file: 0o644}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := permsFor(tt.mode); got != tt.want {
				t.Errorf("permsFor(%v) = %+v, want %+v", tt.mode, got, tt.want)
			}
		})
	}
}

// modeOf is path's permission and setgid bits.
func modeOf(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode() & (fs.ModePerm | fs.ModeSetgid)
}

// fillLayout stores a blob and an index entry, taking every lock once.
func fillLayout(t *testing.T, l *Layout) v1.Hash {
	t.Helper()
	h := put(t, l, []byte("blob"))
	unlock, err := l.LockShared(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	if _, err := l.TempFiles(); err != nil {
		t.Fatal(err)
	}
	err = l.UpdateIndex(context.Background(), func(idx *v1.IndexManifest) (bool, error) {
		idx.Manifests = append(idx.Manifests, v1.Descriptor{MediaType: types.OCIImageIndex, Digest: h, Size: 4})
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestLayoutModes: whatever the umask, what a layout holds is readable by
// every user (blobs 0444), and group-writable where its folder is.
// Not parallel: it sets the process's umask.
func TestLayoutModes(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	tests := []struct {
		name      string
		parent    fs.FileMode // of the folder the layout is made in
		inParent  bool        // the layout is the parent folder itself (an empty volume)
		dir, file fs.FileMode
	}{
		{name: "private parent", parent: 0o700, dir: 0o755, file: 0o644},
		{name: "fsGroup volume, layout inside", parent: fs.ModeSetgid | 0o775, dir: fs.ModeSetgid | 0o775, file: 0o664},
		{name: "fsGroup volume, layout is the volume", parent: fs.ModeSetgid | 0o775, inParent: true, dir: fs.ModeSetgid | 0o775, file: 0o664},
		{name: "group-writable, no setgid", parent: 0o770, dir: 0o775, file: 0o664},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent := filepath.Join(t.TempDir(), "volume")
			if err := os.Mkdir(parent, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(parent, tt.parent); err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(parent, "cache")
			if tt.inParent {
				dir = parent
			}
			l, err := OpenLayout(dir)
			if err != nil {
				t.Fatal(err)
			}
			h := fillLayout(t, l)
			want := map[string]fs.FileMode{
				"blobs":                      tt.dir,
				"blobs/sha256":               tt.dir,
				".kiln":                      tt.dir,
				"index.json":                 tt.file,
				"oci-layout":                 tt.file,
				".kiln/use.lock":             tt.file,
				".kiln/index.lock":           tt.file,
				".kiln/temps.lock":           tt.file,
				"blobs/sha256/" + h.Hex:      0o444,
				".kiln/" + retiredFile + "?": 0, // not made: nothing retired
			}
			if !tt.inParent {
				want["."] = tt.dir
			}
			for rel, mode := range want {
				if strings.HasSuffix(rel, "?") {
					if _, err := os.Lstat(filepath.Join(dir, strings.TrimSuffix(rel, "?"))); err == nil {
						t.Errorf("%s exists", strings.TrimSuffix(rel, "?"))
					}
					continue
				}
				if got := modeOf(t, filepath.Join(dir, rel)); got != mode {
					t.Errorf("%s: mode %v, want %v", rel, got, mode)
				}
			}
		})
	}
}

// TestRepairModes: a layout an older kiln wrote under umask 077 (blobs,
// files and folders private) is made readable in place, the same files.
func TestRepairModes(t *testing.T) {
	l := openTestLayout(t)
	h := fillLayout(t, l)
	blob := l.BlobPath(h)
	before, err := os.Stat(blob)
	if err != nil {
		t.Fatal(err)
	}
	private := map[string]fs.FileMode{
		blob: 0o600, filepath.Join(l.Dir(), "index.json"): 0o600, filepath.Join(l.Dir(), ".kiln", "use.lock"): 0o600,
		filepath.Join(l.Dir(), "blobs", "sha256"): 0o700, filepath.Join(l.Dir(), ".kiln"): 0o700,
	}
	for p, m := range private {
		if err := os.Chmod(p, m); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := l.RepairModes()
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Fixed) != len(private) || len(rep.Failed) != 0 {
		t.Errorf("RepairModes = %+v, want the %d private paths fixed", rep, len(private))
	}
	for p, want := range map[string]fs.FileMode{blob: 0o444, filepath.Join(l.Dir(), "index.json"): 0o644,
		filepath.Join(l.Dir(), ".kiln", "use.lock"): 0o644, filepath.Join(l.Dir(), "blobs", "sha256"): 0o755, filepath.Join(l.Dir(), ".kiln"): 0o755} {
		if got := modeOf(t, p); got != want {
			t.Errorf("%s: mode %v after repair, want %v", p, got, want)
		}
	}
	after, err := os.Stat(blob)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) {
		t.Error("the blob was replaced, not repaired in place")
	}
	if rep, err := l.RepairModes(); err != nil || len(rep.Fixed) != 0 {
		t.Errorf("second RepairModes = %+v, %v; want nothing to do", rep, err)
	}
}

// TestOpenLockAccess: a shared lock is taken on a read-only descriptor (a
// reader needs no write access), an exclusive one on a read-write one
// (NFS's emulation of flock needs it for write locks).
func TestOpenLockAccess(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name      string
		exclusive bool
		want      int
	}{
		{name: "shared", want: unix.O_RDONLY},
		{name: "exclusive", exclusive: true, want: unix.O_RDWR},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, existing := range []bool{false, true} {
				path := filepath.Join(dir, tt.name+".lock")
				f, err := openLock(path, tt.exclusive)
				if err != nil {
					t.Fatal(err)
				}
				flags, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
				f.Close()
				if err != nil {
					t.Fatal(err)
				}
				if got := flags & unix.O_ACCMODE; got != tt.want {
					t.Errorf("existing=%v: opened with access mode %#o, want %#o", existing, got, tt.want)
				}
			}
		})
	}
}

func TestLockUnavailable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "use.lock")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	open := func(errno syscall.Errno) error {
		return fmt.Errorf("opening lock %s: %w", path, &fs.PathError{Op: "open", Path: path, Err: errno})
	}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{name: "no lock file on a read-only mount", err: open(syscall.EROFS), want: true},
		{name: "no .kiln folder", err: open(syscall.ENOENT), want: true},
		{name: "lock file of another user", err: open(syscall.EACCES), want: true},
		{name: "no flock", err: fmt.Errorf("locking %s: %w", path, syscall.ENOLCK), want: true},
		{name: "cancelled wait", err: fmt.Errorf("waiting for lock %s: %w", path, context.Canceled)},
		{name: "other", err: open(syscall.EIO)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			why := lockUnavailable(path, tt.err)
			if (why != nil) != tt.want {
				t.Fatalf("lockUnavailable(%v) = %v, want unavailable: %v", tt.err, why, tt.want)
			}
			if why != nil && strings.Count(why.Error(), path) != 1 {
				t.Errorf("the reason should name the lock file once: %v", why)
			}
		})
	}
}

func TestAccessErrorMessage(t *testing.T) {
	tests := []struct {
		name string
		err  *AccessError
		want []string
	}{
		{
			name: "unreadable folder",
			err:  &AccessError{Path: "/cache", Need: "read", UID: 65534, GID: 65534, Mode: fs.ModeDir | 0o700, Owner: 0, Group: 0, Err: fs.ErrPermission},
			want: []string{"uid 65534", "cannot read the cache folder /cache", "0700", "owned by uid 0", "fsGroup", "readOnly: true"},
		},
		{
			name: "not writable, with groups",
			err:  &AccessError{Path: "/cache", Need: "write", UID: 2001, GID: 2001, Groups: []int{4242}, Mode: fs.ModeDir | fs.ModeSetgid | 0o755, Owner: 0, Group: 4242, Err: fs.ErrPermission},
			want: []string{"uid 2001", "groups 4242", "cannot write to the cache folder /cache", "2755", "run it as uid 0", "fsGroup"},
		},
		{
			name: "read-only mount",
			err:  &AccessError{Path: "/cache", Need: "write", UID: 0, Mode: fs.ModeDir | 0o755, ReadOnly: true, Err: syscall.EROFS},
			want: []string{"read-only mount", "read-write mount"},
		},
		{
			name: "blob",
			err:  &AccessError{Path: "/cache/blobs/sha256/ab", Need: "read", UID: 65534, GID: 65534, Mode: 0o600, Err: fs.ErrPermission},
			want: []string{"cache file /cache/blobs/sha256/ab", "0600", "kiln warm"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := tt.err.Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message lacks %q: %s", w, msg)
				}
			}
			if !errors.Is(tt.err, tt.err.Err) {
				t.Errorf("errors.Is(err, %v) is false", tt.err.Err)
			}
		})
	}
}

// TestAccessErrorNamesTheFolderInTheWay: a path that cannot be stat'ed is
// described by the nearest folder that can, and other errors pass through.
func TestAccessErrorNamesTheFolderInTheWay(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "no", "such")
	err := accessError(missing, "read", &fs.PathError{Op: "open", Path: missing, Err: syscall.EACCES})
	var ae *AccessError
	if !errors.As(err, &ae) || ae.Path != dir || !ae.Mode.IsDir() {
		t.Errorf("accessError = %#v, want one about %s", err, dir)
	}
	other := errors.New("boom")
	if got := accessError(dir, "read", other); got != other {
		t.Errorf("accessError(boom) = %v, want it unchanged", got)
	}
	if accessError(dir, "read", nil) != nil {
		t.Error("accessError(nil) is not nil")
	}
}

// TestRetired: every entry that leaves index.json — dropped, or replaced by
// another digest — is remembered with when it left, until forgotten; an
// entry whose annotations change stays where it is.
func TestRetired(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	l, err := OpenLayout(t.TempDir(), WithLayoutClock(func() time.Time { return now }), WithRetiredEntries())
	if err != nil {
		t.Fatal(err)
	}
	desc := func(body, ref string) v1.Descriptor {
		h := put(t, l, []byte(body))
		return v1.Descriptor{MediaType: types.OCIImageIndex, Digest: h, Size: int64(len(body)), Annotations: map[string]string{AnnotationRefName: ref}}
	}
	a1, b, a2 := desc("a1", "a:1"), desc("b", "b:1"), desc("a2", "a:1")
	update := func(fn func(idx *v1.IndexManifest)) {
		t.Helper()
		if err := l.UpdateIndex(context.Background(), func(idx *v1.IndexManifest) (bool, error) { fn(idx); return true, nil }); err != nil {
			t.Fatal(err)
		}
	}
	retired := func() map[v1.Hash]time.Time {
		t.Helper()
		ds, err := l.Retired()
		if err != nil {
			t.Fatal(err)
		}
		out := map[v1.Hash]time.Time{}
		for _, d := range ds {
			out[d.Digest] = RetiredAt(d)
		}
		return out
	}
	update(func(idx *v1.IndexManifest) { idx.Manifests = []v1.Descriptor{a1, b} })
	update(func(idx *v1.IndexManifest) { idx.Manifests[0].Annotations[AnnotationChecked] = "later" })
	if got := retired(); len(got) != 0 {
		t.Fatalf("retired after adding and touching: %v", got)
	}
	t1 := now
	update(func(idx *v1.IndexManifest) { idx.Manifests = []v1.Descriptor{a2, b} }) // a:1 moved
	now = now.Add(time.Hour)
	update(func(idx *v1.IndexManifest) { idx.Manifests = []v1.Descriptor{a2} }) // b dropped
	got := retired()
	if len(got) != 2 || !got[a1.Digest].Equal(t1) || !got[b.Digest].Equal(now) {
		t.Fatalf("retired = %v, want %s at %s and %s at %s", got, a1.Digest, t1, b.Digest, now)
	}
	if err := l.ForgetRetired(context.Background(), t1); err != nil {
		t.Fatal(err)
	}
	if got := retired(); len(got) != 1 || got[b.Digest].IsZero() {
		t.Fatalf("retired after forgetting up to %s = %v, want only %s", t1, got, b.Digest)
	}
	if err := l.ForgetRetired(context.Background(), now); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(l.Dir(), kilnDir, retiredFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s left after forgetting everything: %v", retiredFile, err)
	}

	// An output layout, opened without WithRetiredEntries, keeps no record.
	plain, err := OpenLayout(l.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if err := plain.UpdateIndex(context.Background(), func(idx *v1.IndexManifest) (bool, error) { idx.Manifests = nil; return true, nil }); err != nil {
		t.Fatal(err)
	}
	if got := retired(); len(got) != 0 {
		t.Errorf("a layout opened without WithRetiredEntries recorded %v", got)
	}
	assertNoTemps(t, l)
}

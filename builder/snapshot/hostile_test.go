package snapshot

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSnapshotErrors covers misuse and trees a layer cannot carry.
func TestSnapshotErrors(t *testing.T) {
	opts := Options{Exclude: testExclude}
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name    string
		do      func(t *testing.T) error
		wantErr error
	}{
		{
			name: "walk: a name reserved for whiteouts",
			do: func(t *testing.T) error {
				root := baseDir(t)
				w := NewWalk(root, opts)
				must(t, w.Before(context.Background()))
				mustWrite(t, filepath.Join(root, "etc/.wh.passwd"), "", 0o644)
				_, err := w.Diff(context.Background(), io.Discard)
				return err
			},
			wantErr: ErrReservedName,
		},
		{
			name: "overlay: a name reserved for whiteouts",
			do: func(t *testing.T) error {
				root := baseDir(t)
				o := mountOverlayForTest(t, root, opts)
				merged, err := o.Mount(context.Background())
				must(t, err)
				mustWrite(t, filepath.Join(merged, "etc/.wh..wh..opq"), "", 0o644)
				_, err = o.Diff(context.Background(), io.Discard)
				return err
			},
			wantErr: ErrReservedName,
		},
		{
			name: "walk: Diff without Before",
			do: func(t *testing.T) error {
				_, err := NewWalk(baseDir(t), opts).Diff(context.Background(), io.Discard)
				return err
			},
			wantErr: ErrNoBefore,
		},
		{
			name: "walk: Before canceled",
			do: func(t *testing.T) error {
				return NewWalk(baseDir(t), opts).Before(canceled)
			},
			wantErr: context.Canceled,
		},
		{
			name: "walk: Diff canceled",
			do: func(t *testing.T) error {
				w := NewWalk(baseDir(t), opts)
				must(t, w.Before(context.Background()))
				_, err := w.Diff(canceled, io.Discard)
				return err
			},
			wantErr: context.Canceled,
		},
		{
			name: "walk: root missing",
			do: func(t *testing.T) error {
				return NewWalk(filepath.Join(t.TempDir(), "nope"), opts).Before(context.Background())
			},
			wantErr: os.ErrNotExist,
		},
		{
			name: "overlay: Diff without Mount",
			do: func(t *testing.T) error {
				o, err := NewOverlay(baseDir(t), t.TempDir(), opts)
				must(t, err)
				_, err = o.Diff(context.Background(), io.Discard)
				return err
			},
			wantErr: ErrNotMounted,
		},
		{
			name: "overlay: a comma in a path",
			do: func(t *testing.T) error {
				scratch := filepath.Join(t.TempDir(), "a,b")
				_, err := NewOverlay(baseDir(t), scratch, opts)
				return err
			},
			wantErr: ErrOverlayUnsupported,
		},
		{
			name: "overlay: scratch inside the root",
			do: func(t *testing.T) error {
				root := baseDir(t)
				_, err := NewOverlay(root, filepath.Join(root, "tmp/scratch"), opts)
				return err
			},
			wantErr: ErrScratchInRoot,
		},
		{
			name: "overlay: root is a file",
			do: func(t *testing.T) error {
				_, err := NewOverlay(filepath.Join(baseDir(t), "etc/passwd"), t.TempDir(), opts)
				return err
			},
			wantErr: errAny,
		},
		{
			name: "overlay: Mount canceled",
			do: func(t *testing.T) error {
				o, err := NewOverlay(baseDir(t), t.TempDir(), opts)
				must(t, err)
				_, err = o.Mount(canceled)
				return err
			},
			wantErr: context.Canceled,
		},
		{
			name: "overlay: upper on overlayfs is refused as unsupported",
			do: func(t *testing.T) error {
				outer := mountOverlayForTest(t, baseDir(t), opts)
				merged, err := outer.Mount(context.Background())
				must(t, err)
				inner, err := NewOverlay(baseDir(t), filepath.Join(merged, "tmp"), opts)
				must(t, err)
				_, err = inner.Mount(context.Background())
				if err == nil {
					inner.Close()
				}
				return err
			},
			wantErr: ErrOverlayUnsupported,
		},
		{
			name: "overlay: Diff canceled leaves the overlay unmounted",
			do: func(t *testing.T) error {
				o := mountOverlayForTest(t, baseDir(t), opts)
				merged, err := o.Mount(context.Background())
				must(t, err)
				mustWrite(t, filepath.Join(merged, "etc/new"), "n", 0o644)
				_, err = o.Diff(canceled, io.Discard)
				if o.mounted {
					t.Errorf("still mounted after a failed Diff")
				}
				return err
			},
			wantErr: context.Canceled,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.do(t)
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr == errAny && err == nil, tt.wantErr != nil && tt.wantErr != errAny && !errors.Is(err, tt.wantErr):
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}
		})
	}
}

var errAny = errors.New("any error")

// TestOverlayCloseLeavesRootUntouched: a step that failed is thrown away.
func TestOverlayCloseLeavesRootUntouched(t *testing.T) {
	root := baseDir(t)
	want := describe(t, root)
	o := mountOverlayForTest(t, root, Options{})
	scratch := o.scratch
	merged, err := o.Mount(context.Background())
	must(t, err)
	mustWrite(t, filepath.Join(merged, "etc/new"), "n", 0o644)
	must(t, os.RemoveAll(filepath.Join(merged, "usr")))
	must(t, o.Close())
	if diff := diffTrees(describe(t, root), want); diff != "" {
		t.Errorf("root changed by a step thrown away:\n%s", diff)
	}
	if names, _ := os.ReadDir(scratch); len(names) != 0 {
		t.Errorf("scratch not emptied: %v", names)
	}
	merged, err = o.Mount(context.Background())
	must(t, err)
	if diff := diffTrees(describe(t, merged), want); diff != "" {
		t.Errorf("mounted again, the overlay shows the step thrown away:\n%s", diff)
	}
}

// TestSymlinksOutOfTheRoot: a step's symlinks to the host are entries,
// never followed, whatever they point at.
func TestSymlinksOutOfTheRoot(t *testing.T) {
	s := step{
		name: "symlinks out of the root",
		run: func(t testing.TB, root string) {
			must(t, os.Symlink("/", filepath.Join(root, "opt/host")))
			must(t, os.Symlink("../../../../../../etc", filepath.Join(root, "opt/up")))
			must(t, os.Remove(filepath.Join(root, "opt/app/x")))
			must(t, os.Symlink("/etc/shadow", filepath.Join(root, "opt/app/x")))
		},
	}
	for _, strategy := range []string{"walk", "overlay"} {
		t.Run(strategy, func(t *testing.T) {
			layer, _ := snapshotStep(t, strategy, s, Options{Exclude: testExclude})
			var names []string
			for _, e := range readLayer(t, layer) {
				names = append(names, e.Name+" -> "+e.Linkname)
			}
			want := "opt/ -> ,opt/app/ -> ,opt/app/x -> /etc/shadow,opt/host -> /,opt/up -> ../../../../../../etc"
			if got := strings.Join(names, ","); got != want {
				t.Errorf("layer:\n%s\nwant\n%s", got, want)
			}
		})
	}
}

// TestDiffTwice: Walk keeps its record, so a second Diff gives the same.
func TestDiffTwice(t *testing.T) {
	root := baseDir(t)
	w := NewWalk(root, Options{Exclude: testExclude})
	must(t, w.Before(context.Background()))
	stepNamed(t, "create files dirs a setuid binary and a fifo").run(t, root)
	var a, b bytes.Buffer
	_, err := w.Diff(context.Background(), &a)
	must(t, err)
	_, err = w.Diff(context.Background(), &b)
	must(t, err)
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Errorf("two Diffs of one Before differ")
	}
}

// TestWalkOldTree: in a tree older than recentWindow Walk reads no xattrs
// of files before the step (of directories always: their ctime does not
// count), and still sees one set by it (the ctime moves).
func TestWalkOldTree(t *testing.T) {
	root := baseDir(t)
	age()
	w := NewWalk(root, Options{Exclude: testExclude})
	must(t, w.Before(context.Background()))
	for rel, r := range w.before {
		if r.hashed && r.mode&unix.S_IFMT != unix.S_IFDIR {
			t.Fatalf("xattrs of /%s read for an old tree", rel)
		}
	}
	s := stepNamed(t, "xattrs set and changed")
	s.run(t, root)
	var buf bytes.Buffer
	_, err := w.Diff(context.Background(), &buf)
	must(t, err)
	s.check(t, "walk", readLayer(t, buf.Bytes()))
}

// TestMountPointNotInLayer: a filesystem the step mounts in the tree (a
// cache mount the caller forgot to exclude) is left out, as is what it
// hides, and nothing below it is whiteouted.
func TestMountPointNotInLayer(t *testing.T) {
	s := step{run: func(t testing.TB, root string) {
		target := filepath.Join(root, "opt/app")
		must(t, unix.Mount("tmpfs", target, "tmpfs", 0, "mode=755"))
		t.Cleanup(func() { _ = unix.Unmount(target, unix.MNT_DETACH) }) // Overlay.Diff may have detached it
		mustWrite(t, filepath.Join(target, "cached"), "c", 0o644)
		mustWrite(t, filepath.Join(root, "etc/motd"), "changed\n", 0)
	}}
	for _, strategy := range []string{"walk", "overlay"} {
		t.Run(strategy, func(t *testing.T) {
			layer, _ := snapshotStep(t, strategy, s, Options{Exclude: testExclude})
			got := strings.Join(entryNames(readLayer(t, layer)), ",")
			if want := "etc,etc/motd"; got != want {
				t.Errorf("layer %s, want %s", got, want)
			}
		})
	}
}

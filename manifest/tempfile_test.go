package manifest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
)

// writerHelperEnv makes the test binary, re-executed, act as another
// process in the middle of writing a blob (see TestHelperBlobWriter).
const writerHelperEnv = "KILN_MANIFEST_HELPER_WRITER"

// TestHelperBlobWriter is not a test: run by writerInOtherProcess, it starts
// writing a blob into the layout named in $KILN_MANIFEST_HELPER_WRITER,
// prints its temp file's path, and waits to be killed.
func TestHelperBlobWriter(t *testing.T) {
	dir := os.Getenv(writerHelperEnv)
	if dir == "" {
		t.Skip("helper process for TestRemoveDeadTempsSparesLiveWriters")
	}
	l, err := OpenLayout(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	data := bytes.Repeat([]byte("x"), 1<<20)
	w, err := l.NewBlobWriter(sha256Of(data), int64(len(data)))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if _, err := w.Write(data[:len(data)/2]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fmt.Println(w.f.Name())
	io.Copy(io.Discard, os.Stdin) // until killed
	os.Exit(3)
}

// writerInOtherProcess starts a process that writes half a blob into l and
// returns its temp file and a function that kills it with SIGKILL.
func writerInOtherProcess(t *testing.T, l *Layout) (temp string, kill func()) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperBlobWriter$")
	cmd.Env = append(os.Environ(), writerHelperEnv+"="+l.Dir())
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	kill = func() {
		if killed {
			return
		}
		killed = true
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		stdin.Close()
	}
	t.Cleanup(kill)
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("helper writer: %v", err)
	}
	return strings.TrimSpace(line), kill
}

// deadTemp makes a temp file as a killed writer leaves it: no lock on it.
func deadTemp(t *testing.T, dir, name string, size int) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, bytes.Repeat([]byte{0xa5}, size), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

func tempPaths(ts []TempFile) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.Path)
	}
	slices.Sort(out)
	return out
}

// TestRemoveDeadTempsSparesLiveWriters: a sweep removes the temp files of
// writers that are gone (blobs and index.json alike) and keeps those of
// live writers, in this process or another; once a writer is killed, the
// next sweep removes its file.
func TestRemoveDeadTempsSparesLiveWriters(t *testing.T) {
	l := openTestLayout(t)
	blobs := filepath.Join(l.Dir(), "blobs", "sha256")
	deadBlob := deadTemp(t, blobs, tmpPrefix+"0123456789ab-111", 3<<20)
	deadIndex := deadTemp(t, l.Dir(), tmpPrefix+"index.json-222", 100)
	// Empty and unlocked: with temps.lock held by the sweep, a writer
	// cannot be between creating and locking it, so it is dead too.
	newEmpty := deadTemp(t, blobs, tmpPrefix+"0123456789ab-333", 0)
	oldEmpty := deadTemp(t, blobs, tmpPrefix+"0123456789ab-444", 0)
	old := time.Now().Add(-emptyTempGrace - time.Minute)
	if err := os.Chtimes(oldEmpty, old, old); err != nil {
		t.Fatal(err)
	}

	data := []byte("a blob this process is writing")
	mine, err := l.NewBlobWriter(sha256Of(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	defer mine.Abort()
	if _, err := mine.Write(data[:5]); err != nil {
		t.Fatal(err)
	}
	other, kill := writerInOtherProcess(t, l)

	listed, err := l.TempFiles()
	if err != nil {
		t.Fatal(err)
	}
	for _, tf := range listed {
		wantLive := tf.Path == mine.f.Name() || tf.Path == other
		if tf.Live != wantLive {
			t.Errorf("TempFiles: %s live=%v, want %v", tf.Path, tf.Live, wantLive)
		}
	}
	if len(listed) != 6 {
		t.Errorf("TempFiles listed %v, want 6 files", tempPaths(listed))
	}
	if !exists(deadBlob) || !exists(deadIndex) {
		t.Fatal("TempFiles removed a file")
	}

	removed, err := l.RemoveDeadTemps()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := tempPaths(removed), []string{deadIndex, deadBlob, newEmpty, oldEmpty}; !slices.Equal(got, want) {
		t.Errorf("RemoveDeadTemps removed %v, want %v", got, want)
	}
	for _, p := range []string{deadBlob, deadIndex, newEmpty, oldEmpty} {
		if exists(p) {
			t.Errorf("dead temp %s survived the sweep", p)
		}
	}
	for _, p := range []string{mine.f.Name(), other} {
		if !exists(p) {
			t.Errorf("the sweep removed %s, which a live writer holds", p)
		}
	}
	// The live writer in this process is unharmed: it commits.
	if _, err := mine.Write(data[5:]); err != nil {
		t.Fatal(err)
	}
	if err := mine.Commit(); err != nil {
		t.Fatalf("Commit after a sweep: %v", err)
	}

	kill()
	if !exists(other) {
		t.Fatal("the killed writer's temp file vanished by itself")
	}
	removed, err = l.RemoveDeadTemps()
	if err != nil {
		t.Fatal(err)
	}
	if got := tempPaths(removed); !slices.Equal(got, []string{other}) {
		t.Errorf("sweep after kill -9 removed %v, want %v", got, []string{other})
	}
	assertNoTemps(t, l)
}

// TestRemoveDeadTempsWithoutTempsLock: a sweep that cannot have
// temps.lock (a process stopped between creating its temp file and locking
// it holds it) still removes dead files with bytes in them, but leaves a
// young empty one alone: it may be that process's.
func TestRemoveDeadTempsWithoutTempsLock(t *testing.T) {
	l := openTestLayout(t)
	blobs := filepath.Join(l.Dir(), "blobs", "sha256")
	release, held := holdTempsLock(l.Dir(), false)
	if !held {
		t.Fatal("temps.lock not taken")
	}
	defer release()
	dead := deadTemp(t, blobs, tmpPrefix+"0123456789ab-1", 10)
	empty := deadTemp(t, blobs, tmpPrefix+"0123456789ab-2", 0)
	removed, err := l.RemoveDeadTemps()
	if err != nil {
		t.Fatal(err)
	}
	if got := tempPaths(removed); !slices.Equal(got, []string{dead}) {
		t.Errorf("removed %v, want only %s", got, dead)
	}
	if !exists(empty) {
		t.Error("a young empty temp file was removed without temps.lock")
	}
}

// TestBlobWriterErrorsRemoveTemp: every way a write can fail leaves no
// temp file, whether or not the caller aborts.
func TestBlobWriterErrorsRemoveTemp(t *testing.T) {
	data := []byte("the promised bytes")
	tests := []struct {
		name    string
		want    v1.Hash
		size    int64
		write   []byte
		wantErr error
	}{
		{name: "digest mismatch", want: sha256Of([]byte("other")), size: int64(len(data)), write: data, wantErr: ErrDigestMismatch},
		{name: "short", want: sha256Of(data), size: int64(len(data)), write: data[:3], wantErr: ErrSizeMismatch},
		{name: "unknown size, wrong bytes", want: sha256Of(data), size: -1, write: data[1:], wantErr: ErrDigestMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := openTestLayout(t)
			w, err := l.NewBlobWriter(tt.want, tt.size)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(tt.write); err != nil {
				t.Fatal(err)
			}
			checkErr(t, w.Commit(), tt.wantErr) // no Abort: Commit cleans up by itself
			assertNoTemps(t, l)
			if err := w.Commit(); err == nil {
				t.Error("a second Commit after a failed one succeeded")
			}
		})
	}
	t.Run("abort", func(t *testing.T) {
		l := openTestLayout(t)
		w, err := l.NewBlobWriter(sha256Of(data), int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data[:4])
		w.Abort()
		w.Abort()
		assertNoTemps(t, l)
	})
}

// TestCreateTempStartsOverWhenSwept: a sweeper that removes a new temp file
// before its writer locked it is noticed, and the writer uses a new file.
func TestCreateTempStartsOverWhenSwept(t *testing.T) {
	dir := t.TempDir()
	f, err := os.CreateTemp(dir, tmpPrefix+"x-")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := os.Remove(f.Name()); err != nil { // the sweeper won the race
		t.Fatal(err)
	}
	swept, err := lockOwnTemp(f)
	if err != nil || !swept {
		t.Fatalf("lockOwnTemp of a removed file = %v, %v; want swept", swept, err)
	}
	g, err := createTemp(dir, dir, tmpPrefix+"y-")
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	// Locked: another descriptor, even in this process, cannot lock it.
	h, err := os.Open(g.Name())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := unix.Flock(int(h.Fd()), unix.LOCK_EX|unix.LOCK_NB); !errors.Is(err, unix.EWOULDBLOCK) {
		t.Errorf("flock on a new temp file from another descriptor: %v, want EWOULDBLOCK", err)
	}
}

// TestSweepBesideWriters: writers and sweepers together, far more often
// than warms sweep; no write may fail for a sweep, and nothing may be left
// behind.
func TestSweepBesideWriters(t *testing.T) {
	l := openTestLayout(t)
	stop := make(chan struct{})
	var sweeps sync.WaitGroup
	for range 2 {
		sweeps.Add(1)
		go func() {
			defer sweeps.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := l.RemoveDeadTemps(); err != nil {
					t.Errorf("sweep: %v", err)
					return
				}
				time.Sleep(time.Millisecond) // let writers have temps.lock too
			}
		}()
	}
	var writers sync.WaitGroup
	for i := range 8 {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for j := range 100 {
				data := []byte(fmt.Sprintf("blob %d of writer %d", j, i))
				if _, err := l.WriteBlob(context.Background(), sha256Of(data), int64(len(data)), bytes.NewReader(data)); err != nil {
					t.Errorf("writer %d: %v", i, err)
					return
				}
				if j%10 == 0 {
					if _, err := l.PutBlob([]byte(fmt.Sprintf("small %d %d", i, j))); err != nil {
						t.Errorf("writer %d: %v", i, err)
						return
					}
					if err := l.UpdateIndex(context.Background(), func(*v1.IndexManifest) (bool, error) { return true, nil }); err != nil {
						t.Errorf("writer %d: index: %v", i, err)
						return
					}
				}
			}
		}()
	}
	writers.Wait()
	close(stop)
	sweeps.Wait()
	assertNoTemps(t, l)
}

// TestNoSpace: a write that does not fit fails with an error that names the
// cache folder and says the volume is full, and leaves no temp file, for
// blobs and index.json alike. It needs a small tmpfs, so root.
func TestNoSpace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	mnt := t.TempDir()
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("mounting a tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	dir := filepath.Join(mnt, "cache")
	l, err := OpenLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	wantFull := func(t *testing.T, err error) {
		t.Helper()
		var ns *NoSpaceError
		if !errors.Is(err, ErrNoSpace) || !errors.As(err, &ns) {
			t.Fatalf("err = %v, want a NoSpaceError", err)
		}
		if ns.Dir != dir || ns.Size <= 0 || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "is full") {
			t.Errorf("error %q (dir %q, size %d): want it to name %s and say it is full", err, ns.Dir, ns.Size, dir)
		}
		assertNoTemps(t, l)
	}

	big := bytes.Repeat([]byte("0123456789abcdef"), 128<<10) // 2 MB
	t.Run("blob write", func(t *testing.T) {
		_, err := l.WriteBlob(context.Background(), sha256Of(big), int64(len(big)), bytes.NewReader(big))
		wantFull(t, err)
		if !strings.Contains(err.Error(), "2.1 MB") {
			t.Errorf("error %q does not give the blob's size", err)
		}
	})
	t.Run("index", func(t *testing.T) {
		fill := filepath.Join(mnt, "fill")
		f, err := os.Create(fill)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(f, bytes.NewReader(big)) // to the last byte
		f.Close()
		defer os.Remove(fill)
		err = l.UpdateIndex(context.Background(), func(idx *v1.IndexManifest) (bool, error) {
			idx.Manifests = append(idx.Manifests, v1.Descriptor{Digest: sha256Of(big), Size: 1, Annotations: map[string]string{"a": strings.Repeat("b", 8192)}})
			return true, nil
		})
		wantFull(t, err)
	})
	// With the room back, the same blob that could not fit before but is
	// small enough now is stored.
	small := big[:256<<10]
	if _, err := l.WriteBlob(context.Background(), sha256Of(small), int64(len(small)), bytes.NewReader(small)); err != nil {
		t.Fatalf("a blob that fits, after the failures: %v", err)
	}
	assertNoTemps(t, l)
}

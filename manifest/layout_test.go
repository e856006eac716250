package manifest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// sha256Of is the digest of data.
func sha256Of(data []byte) v1.Hash {
	sum := sha256.Sum256(data)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

func openTestLayout(t *testing.T) *Layout {
	t.Helper()
	l, err := OpenLayout(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// tempFiles lists leftover temporary files anywhere in the layout.
func tempFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), tmpPrefix) {
			out = append(out, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func assertNoTemps(t *testing.T, l *Layout) {
	t.Helper()
	if temps := tempFiles(t, l.Dir()); len(temps) > 0 {
		t.Errorf("temporary files left behind: %v", temps)
	}
}

func TestOpenLayoutCreates(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "missing", "cache")
	l, err := OpenLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	if l.Dir() != dir {
		t.Errorf("Dir() = %q, want %q", l.Dir(), dir)
	}
	var lf struct {
		Version string `json:"imageLayoutVersion"`
	}
	readJSON(t, filepath.Join(dir, "oci-layout"), &lf)
	if lf.Version != "1.0.0" {
		t.Errorf("oci-layout version %q, want 1.0.0", lf.Version)
	}
	var idx v1.IndexManifest
	readJSON(t, filepath.Join(dir, "index.json"), &idx)
	if idx.SchemaVersion != 2 || idx.MediaType != types.OCIImageIndex || idx.Manifests == nil || len(idx.Manifests) != 0 {
		t.Errorf("fresh index.json = %+v, want schema 2, OCI index, empty (not null) manifests", idx)
	}
	if fi, err := os.Stat(filepath.Join(dir, "blobs", "sha256")); err != nil || !fi.IsDir() {
		t.Errorf("blobs/sha256 not created: %v", err)
	}
	assertNoTemps(t, l)
}

func TestOpenLayoutRelativeDirIsMadeAbsolute(t *testing.T) {
	t.Chdir(t.TempDir())
	l, err := OpenLayout("cache")
	if err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(l.Dir()) {
		t.Errorf("Dir() = %q, want an absolute path", l.Dir())
	}
}

func TestOpenLayoutReopenKeepsContents(t *testing.T) {
	l := openTestLayout(t)
	h, err := l.PutBlob([]byte("kept"))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.UpdateIndex(context.Background(), func(idx *v1.IndexManifest) (bool, error) {
		idx.Manifests = append(idx.Manifests, v1.Descriptor{MediaType: types.OCIImageIndex, Digest: h, Size: 4})
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}
	before := readBytes(t, filepath.Join(l.Dir(), "index.json"))
	layoutBefore := readBytes(t, filepath.Join(l.Dir(), "oci-layout"))

	again, err := OpenLayout(l.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if got := readBytes(t, filepath.Join(again.Dir(), "index.json")); !bytes.Equal(got, before) {
		t.Errorf("reopening rewrote index.json:\n%s\nwant\n%s", got, before)
	}
	if got := readBytes(t, filepath.Join(again.Dir(), "oci-layout")); !bytes.Equal(got, layoutBefore) {
		t.Errorf("reopening rewrote oci-layout: %s", got)
	}
	if !again.HasBlob(h, 4) {
		t.Error("blob lost on reopen")
	}
}

func TestOpenLayoutExistingFolder(t *testing.T) {
	tests := []struct {
		name      string
		ociLayout string // "" = no file
		dirLayout bool   // oci-layout is a folder
		wantErr   error  // nil: success; errAny: any error
	}{
		{name: "valid 1.0.0", ociLayout: `{"imageLayoutVersion":"1.0.0"}`},
		{name: "valid 1.1.0", ociLayout: `{"imageLayoutVersion": "1.1.0", "extra": true}`},
		{name: "not json", ociLayout: `imageLayoutVersion=1.0.0`, wantErr: ErrNotLayout},
		{name: "empty object", ociLayout: `{}`, wantErr: ErrNotLayout},
		{name: "empty file", ociLayout: " ", wantErr: ErrNotLayout},
		{name: "version 2", ociLayout: `{"imageLayoutVersion":"2.0.0"}`, wantErr: ErrNotLayout},
		{name: "version is a number", ociLayout: `{"imageLayoutVersion":1}`, wantErr: ErrNotLayout},
		{name: "oci-layout is a folder", dirLayout: true, wantErr: errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "oci-layout")
			switch {
			case tt.dirLayout:
				if err := os.Mkdir(path, 0o755); err != nil {
					t.Fatal(err)
				}
			case tt.ociLayout != "":
				if err := os.WriteFile(path, []byte(tt.ociLayout), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, err := OpenLayout(dir)
			checkErr(t, err, tt.wantErr)
			if tt.wantErr != nil {
				if _, err := os.Stat(filepath.Join(dir, "index.json")); err == nil {
					t.Error("index.json written into a folder that is not a layout")
				}
			}
		})
	}
}

func TestOpenLayoutOnAFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenLayout(file); err == nil {
		t.Fatal("OpenLayout on a regular file succeeded")
	}
}

func TestOpenLayoutConcurrentCreation(t *testing.T) {
	dir := t.TempDir()
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = OpenLayout(dir)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("opener %d: %v", i, err)
		}
	}
	var idx v1.IndexManifest
	readJSON(t, filepath.Join(dir, "index.json"), &idx)
	if idx.SchemaVersion != 2 {
		t.Errorf("index.json = %+v", idx)
	}
}

func TestWriteBlob(t *testing.T) {
	data := []byte("hello, blob")
	good := sha256Of(data)
	other := sha256Of([]byte("something else"))
	tests := []struct {
		name    string
		digest  v1.Hash
		size    int64
		body    []byte
		wantErr error
	}{
		{name: "happy path", digest: good, size: int64(len(data)), body: data},
		{name: "unknown size", digest: good, size: -1, body: data},
		{name: "empty blob", digest: sha256Of(nil), size: 0, body: nil},
		{name: "digest mismatch", digest: other, size: int64(len(data)), body: data, wantErr: ErrDigestMismatch},
		{name: "digest mismatch unknown size", digest: other, size: -1, body: data, wantErr: ErrDigestMismatch},
		{name: "too long", digest: good, size: int64(len(data)) - 1, body: data, wantErr: ErrSizeMismatch},
		{name: "too short", digest: good, size: int64(len(data)) + 1, body: data, wantErr: ErrSizeMismatch},
		{name: "sha512", digest: v1.Hash{Algorithm: "sha512", Hex: strings.Repeat("ab", 64)}, size: -1, body: data, wantErr: ErrUnsupportedDigest},
		{name: "short hex", digest: v1.Hash{Algorithm: "sha256", Hex: "abc"}, size: -1, body: data, wantErr: errAny},
		{name: "upper-case hex", digest: v1.Hash{Algorithm: "sha256", Hex: strings.ToUpper(good.Hex)}, size: -1, body: data, wantErr: errAny},
		{name: "path traversal hex", digest: v1.Hash{Algorithm: "sha256", Hex: "../../../../etc/passwd" + strings.Repeat("0", 42)}, size: -1, body: data, wantErr: errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := openTestLayout(t)
			n, err := l.WriteBlob(context.Background(), tt.digest, tt.size, bytes.NewReader(tt.body))
			checkErr(t, err, tt.wantErr)
			assertNoTemps(t, l)
			if tt.wantErr != nil {
				if tt.digest.Algorithm == "sha256" && len(tt.digest.Hex) == 64 {
					if _, err := os.Stat(l.BlobPath(tt.digest)); !errors.Is(err, fs.ErrNotExist) {
						t.Errorf("blob at its final path after a failed write: %v", err)
					}
				}
				if bs, _ := l.Blobs(); len(bs) != 0 {
					t.Errorf("blobs/ holds %+v after a failed write", bs)
				}
				return
			}
			if n != int64(len(tt.body)) {
				t.Errorf("wrote %d bytes, want %d", n, len(tt.body))
			}
			if got := readBytes(t, l.BlobPath(tt.digest)); !bytes.Equal(got, tt.body) {
				t.Errorf("stored %q, want %q", got, tt.body)
			}
			if !l.HasBlob(tt.digest, int64(len(tt.body))) {
				t.Error("HasBlob false after a successful write")
			}
		})
	}
}

func TestWriteBlobCancelled(t *testing.T) {
	l := openTestLayout(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	data := []byte("never stored")
	_, err := l.WriteBlob(ctx, sha256Of(data), int64(len(data)), bytes.NewReader(data))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if l.HasBlob(sha256Of(data), -1) {
		t.Error("blob stored despite cancellation")
	}
	assertNoTemps(t, l)
}

func TestWriteBlobReaderError(t *testing.T) {
	l := openTestLayout(t)
	data := []byte("half of it")
	boom := errors.New("boom")
	r := io.MultiReader(bytes.NewReader(data[:4]), iotestErrReader{boom})
	if _, err := l.WriteBlob(context.Background(), sha256Of(data), int64(len(data)), r); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the reader's error", err)
	}
	assertNoTemps(t, l)
}

type iotestErrReader struct{ err error }

func (r iotestErrReader) Read([]byte) (int, error) { return 0, r.err }

func TestBlobWriterResetThenRewrite(t *testing.T) {
	l := openTestLayout(t)
	data := []byte("the right bytes")
	h := sha256Of(data)
	w, err := l.NewBlobWriter(h, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if _, err := w.Write([]byte("wrong!")); err != nil {
		t.Fatal(err)
	}
	if w.Written() != 6 {
		t.Errorf("Written() = %d, want 6", w.Written())
	}
	if err := w.Reset(); err != nil {
		t.Fatal(err)
	}
	if w.Written() != 0 {
		t.Errorf("Written() after Reset = %d, want 0", w.Written())
	}
	// Written in two pieces, as a resumed download would.
	if _, err := w.Write(data[:5]); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data[5:]); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	w.Abort() // safe after Commit: must not remove the blob
	if got := readBytes(t, l.BlobPath(h)); !bytes.Equal(got, data) {
		t.Errorf("stored %q, want %q (Reset must truncate)", got, data)
	}
	assertNoTemps(t, l)
}

func TestBlobWriterRefusesExtraBytes(t *testing.T) {
	l := openTestLayout(t)
	data := []byte("12345")
	w, err := l.NewBlobWriter(sha256Of(data), 5)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if n, err := w.Write([]byte("6")); !errors.Is(err, ErrSizeMismatch) || n != 0 {
		t.Fatalf("Write past size = %d, %v; want 0, ErrSizeMismatch", n, err)
	}
	if err := w.Commit(); err != nil {
		t.Fatalf("Commit after a refused write: %v", err)
	}
}

func TestBlobWriterCommitWhenAlreadyStored(t *testing.T) {
	l := openTestLayout(t)
	data := []byte("two warmers, one blob")
	h := sha256Of(data)
	w1, err := l.NewBlobWriter(h, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	defer w1.Abort()
	w2, err := l.NewBlobWriter(h, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Abort()
	for _, w := range []*BlobWriter{w1, w2} {
		if _, err := w.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w1.Commit(); err != nil {
		t.Fatal(err)
	}
	// A reader has the first copy open while the second writer commits.
	f, err := l.OpenBlob(h)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := w2.Commit(); err != nil {
		t.Fatalf("second Commit of the same blob: %v", err)
	}
	if got, err := io.ReadAll(f); err != nil || !bytes.Equal(got, data) {
		t.Errorf("open reader saw %q, %v", got, err)
	}
	if got, err := l.ReadBlob(h); err != nil || !bytes.Equal(got, data) {
		t.Errorf("ReadBlob = %q, %v", got, err)
	}
	// PutBlob of bytes already stored is a no-op that still returns the digest.
	if got, err := l.PutBlob(data); err != nil || got != h {
		t.Errorf("PutBlob of a stored blob = %v, %v", got, err)
	}
	assertNoTemps(t, l)
}

func TestReadBlob(t *testing.T) {
	data := []byte(`{"schemaVersion":2}`)
	h := sha256Of(data)
	tests := []struct {
		name    string
		prepare func(t *testing.T, l *Layout) v1.Hash
		wantErr error
	}{
		{name: "stored", prepare: func(t *testing.T, l *Layout) v1.Hash { return put(t, l, data) }},
		{name: "missing", prepare: func(*testing.T, *Layout) v1.Hash { return h }, wantErr: fs.ErrNotExist},
		{name: "corrupted by hand", prepare: func(t *testing.T, l *Layout) v1.Hash {
			put(t, l, data)
			writeFile(t, l.BlobPath(h), []byte(`{"schemaVersion":3}`))
			return h
		}, wantErr: ErrDigestMismatch},
		{name: "truncated by hand", prepare: func(t *testing.T, l *Layout) v1.Hash {
			put(t, l, data)
			writeFile(t, l.BlobPath(h), data[:5])
			return h
		}, wantErr: ErrDigestMismatch},
		{name: "larger than a manifest may be", prepare: func(t *testing.T, l *Layout) v1.Hash {
			big := bytes.Repeat([]byte{'x'}, maxManifestSize+1)
			bh := sha256Of(big)
			writeFile(t, l.BlobPath(bh), big)
			return bh
		}, wantErr: errAny},
		{name: "sha512", prepare: func(*testing.T, *Layout) v1.Hash {
			return v1.Hash{Algorithm: "sha512", Hex: strings.Repeat("0", 128)}
		}, wantErr: ErrUnsupportedDigest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := openTestLayout(t)
			got, err := l.ReadBlob(tt.prepare(t, l))
			checkErr(t, err, tt.wantErr)
			if tt.wantErr == nil && !bytes.Equal(got, data) {
				t.Errorf("ReadBlob = %q, want %q", got, data)
			}
		})
	}
}

func TestHasBlobAndRemoveBlob(t *testing.T) {
	l := openTestLayout(t)
	data := []byte("sized")
	h := put(t, l, data)
	for _, tt := range []struct {
		size int64
		want bool
	}{{-1, true}, {5, true}, {4, false}, {6, false}} {
		if got := l.HasBlob(h, tt.size); got != tt.want {
			t.Errorf("HasBlob(size %d) = %v, want %v", tt.size, got, tt.want)
		}
	}
	if err := l.RemoveBlob(h); err != nil {
		t.Fatal(err)
	}
	if l.HasBlob(h, -1) {
		t.Error("blob still there after RemoveBlob")
	}
	if err := l.RemoveBlob(h); err != nil {
		t.Errorf("RemoveBlob of a missing blob: %v, want nil", err)
	}
	if err := l.RemoveBlob(v1.Hash{Algorithm: "md5", Hex: "00"}); !errors.Is(err, ErrUnsupportedDigest) {
		t.Errorf("RemoveBlob(md5) = %v, want ErrUnsupportedDigest", err)
	}
}

func TestBlobsListsTempFiles(t *testing.T) {
	l := openTestLayout(t)
	stored := put(t, l, []byte("stored"))
	unfinished := []byte("unfinished")
	w, err := l.NewBlobWriter(sha256Of(unfinished), int64(len(unfinished)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(unfinished[:3]); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(l.Dir(), "blobs", "sha256", "not-a-digest"), []byte("junk"))

	blobs, err := l.Blobs()
	if err != nil {
		t.Fatal(err)
	}
	var gotStored, gotTemp, gotJunk bool
	for _, b := range blobs {
		switch base := filepath.Base(b.Path); {
		case b.Hash == stored && !b.Temp && b.Size == 6:
			gotStored = true
		case strings.HasPrefix(base, tmpPrefix) && b.Temp && b.Hash == (v1.Hash{}) && b.Size == 3:
			gotTemp = true
		case base == "not-a-digest" && b.Temp && b.Hash == (v1.Hash{}):
			gotJunk = true
		default:
			t.Errorf("unexpected entry %+v", b)
		}
	}
	if !gotStored || !gotTemp || !gotJunk {
		t.Errorf("Blobs() = %+v; stored %v, temp %v, junk %v", blobs, gotStored, gotTemp, gotJunk)
	}

	w.Abort()
	blobs, err = l.Blobs()
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range blobs {
		if strings.HasPrefix(filepath.Base(b.Path), tmpPrefix) {
			t.Errorf("Abort left %s", b.Path)
		}
	}
}

func TestUpdateIndexWritesAtomically(t *testing.T) {
	l := openTestLayout(t)
	h := put(t, l, []byte("entry"))
	err := l.UpdateIndex(context.Background(), func(idx *v1.IndexManifest) (bool, error) {
		idx.Manifests = append(idx.Manifests, v1.Descriptor{
			MediaType: types.OCIImageIndex, Digest: h, Size: 5,
			Annotations: map[string]string{AnnotationRefName: "example.com/a:1"},
		})
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	idx, err := l.ReadIndex()
	if err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != 1 || idx.Manifests[0].Digest != h {
		t.Errorf("index after update = %+v", idx.Manifests)
	}
	fi, err := os.Stat(filepath.Join(l.Dir(), "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o644 {
		t.Errorf("index.json mode %v, want 0644 (other tools read it)", perm)
	}
	assertNoTemps(t, l)
}

func TestUpdateIndexUnchanged(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name    string
		fn      func(*v1.IndexManifest) (bool, error)
		wantErr error
	}{
		{name: "false", fn: func(idx *v1.IndexManifest) (bool, error) {
			idx.Manifests = append(idx.Manifests, v1.Descriptor{}) // changed in memory, but not kept
			return false, nil
		}},
		{name: "error", fn: func(idx *v1.IndexManifest) (bool, error) {
			idx.Manifests = nil
			return true, boom
		}, wantErr: boom},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := openTestLayout(t)
			path := filepath.Join(l.Dir(), "index.json")
			before := readBytes(t, path)
			fiBefore, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			err = l.UpdateIndex(context.Background(), tt.fn)
			checkErr(t, err, tt.wantErr)
			fiAfter, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if !fiAfter.ModTime().Equal(fiBefore.ModTime()) || !os.SameFile(fiBefore, fiAfter) {
				t.Error("index.json was replaced")
			}
			if got := readBytes(t, path); !bytes.Equal(got, before) {
				t.Errorf("index.json changed:\n%s", got)
			}
			assertNoTemps(t, l)
		})
	}
}

func TestUpdateIndexConcurrent(t *testing.T) {
	l := openTestLayout(t)
	const writers = 20
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each goroutine opens the layout itself, as separate processes would.
			li, err := OpenLayout(l.Dir())
			if err != nil {
				errs[i] = err
				return
			}
			errs[i] = li.UpdateIndex(context.Background(), func(idx *v1.IndexManifest) (bool, error) {
				idx.Manifests = append(idx.Manifests, v1.Descriptor{
					MediaType:   types.OCIImageIndex,
					Digest:      sha256Of(fmt.Appendf(nil, "entry %d", i)),
					Annotations: map[string]string{AnnotationRefName: fmt.Sprintf("example.com/img:%d", i)},
				})
				return true, nil
			})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("writer %d: %v", i, err)
		}
	}
	entries, err := l.Entries()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range entries {
		seen[e.Ref] = true
	}
	for i := range writers {
		if ref := fmt.Sprintf("example.com/img:%d", i); !seen[ref] {
			t.Errorf("entry %s lost (lost update)", ref)
		}
	}
	if len(entries) != writers {
		t.Errorf("%d entries, want %d", len(entries), writers)
	}
	assertNoTemps(t, l)
}

func TestUpdateIndexCancelledWhileLocked(t *testing.T) {
	l := openTestLayout(t)
	held, err := lockFile(context.Background(), filepath.Join(l.Dir(), kilnDir, indexLockFile), true, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer held.unlock()
	ctx, cancel := context.WithCancel(context.Background())
	called := false
	go cancel()
	err = l.UpdateIndex(ctx, func(*v1.IndexManifest) (bool, error) { called = true; return true, nil })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if called {
		t.Error("fn ran without the index lock")
	}
}

func TestWriteFileAtomicFailureLeavesNoTemp(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "index.json")
	// A non-empty folder where the file should go: the rename fails.
	if err := os.MkdirAll(filepath.Join(target, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writeFileAtomic(target, []byte("{}")); err == nil {
		t.Fatal("writeFileAtomic over a folder succeeded")
	}
	if temps := tempFiles(t, dir); len(temps) > 0 {
		t.Errorf("temporary files left behind: %v", temps)
	}
}

func TestReadIndexRejectsGarbage(t *testing.T) {
	l := openTestLayout(t)
	writeFile(t, filepath.Join(l.Dir(), "index.json"), []byte("{not json"))
	if _, err := l.ReadIndex(); !errors.Is(err, ErrNotLayout) {
		t.Fatalf("ReadIndex = %v, want ErrNotLayout", err)
	}
	if _, err := l.Entries(); !errors.Is(err, ErrNotLayout) {
		t.Fatalf("Entries = %v, want ErrNotLayout", err)
	}
}

// errAny in a wantErr field accepts any non-nil error.
var errAny = errors.New("any error")

func checkErr(t *testing.T, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want == nil:
	case err == nil:
		t.Fatalf("got no error, want %v", want)
	case want != errAny && !errors.Is(err, want):
		t.Fatalf("error %v, want one wrapping %v", err, want)
	}
}

func put(t *testing.T, l *Layout, data []byte) v1.Hash {
	t.Helper()
	h, err := l.PutBlob(data)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func readBytes(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	if err := json.Unmarshal(readBytes(t, path), v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// writeFile replaces path with data: removed first, since blobs are
// read-only (0444) and only root may write through that.
func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// A new layout appears whole or not at all: made beside its folder and
// renamed in, by whichever of many racing openers wins; a sibling left by a
// killed process is swept once it is old.
func TestOpenLayoutCreatesAtomically(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "cache")
	stale := filepath.Join(parent, ".cache.kiln-new-123")
	if err := os.MkdirAll(filepath.Join(stale, "blobs"), 0o755); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := OpenLayout(dir)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if _, err := OpenExistingLayout(dir); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "cache" {
			t.Errorf("left beside the layout: %s", e.Name())
		}
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o755 {
		t.Errorf("layout folder mode %v, want 0755", fi.Mode().Perm())
	}
}

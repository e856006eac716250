package manifest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Errors a Layout returns; check them with errors.Is.
var (
	// ErrDigestMismatch: the bytes written do not hash to the digest they were
	// promised under. Nothing was stored.
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrSizeMismatch: the bytes written are more or fewer than promised.
	ErrSizeMismatch = errors.New("size mismatch")
	// ErrNotLayout: the folder holds something that is not an OCI image layout.
	ErrNotLayout = errors.New("not an OCI image layout")
	// ErrUnsupportedDigest: only sha256 blobs are stored.
	ErrUnsupportedDigest = errors.New("unsupported digest algorithm")
	// ErrLockUnavailable: the shared "in use" lock cannot be taken at all
	// (no lock file and a read-only mount, a lock file this user may not
	// open, a filesystem without flock). A reader may go on without it;
	// then only prune's grace period protects what it reads (see
	// Retired).
	ErrLockUnavailable = errors.New("the cache's lock cannot be taken")
)

const (
	layoutFile    = "oci-layout"
	indexFile     = "index.json"
	kilnDir       = ".kiln"
	useLockFile   = "use.lock"
	indexLockFile = "index.lock"
	tmpPrefix     = ".tmp-"
	// maxManifestSize bounds what ReadBlob will load: manifests and configs are
	// small, and a hostile registry must not make kiln allocate gigabytes.
	maxManifestSize = 8 << 20
)

// Layout is an OCI image layout folder that many processes may share.
type Layout struct {
	dir string
	// perm: the modes of what is created in it, derived from the folder's
	// own mode (see perms).
	perm perms
	now  func() time.Time
	// retire: UpdateIndex remembers the entries that leave index.json.
	retire bool
	// indexMu serialises this process's index updates before the file lock,
	// so goroutines queue on a mutex instead of polling flock.
	indexMu sync.Mutex
}

// LayoutOption configures a Layout.
type LayoutOption func(*Layout)

// WithLayoutClock replaces time.Now for the times the layout records (when
// an entry left index.json; see Retired).
func WithLayoutClock(now func() time.Time) LayoutOption {
	return func(l *Layout) {
		if now != nil {
			l.now = now
		}
	}
}

// WithRetiredEntries makes UpdateIndex remember every entry that leaves
// index.json, and when (see Retired): for the warm cache, whose prune keeps
// their blobs for a grace period. Output layouts have no use for it.
func WithRetiredEntries() LayoutOption {
	return func(l *Layout) { l.retire = true }
}

// OpenLayout opens the layout at dir, creating an empty one if the folder is
// missing or empty. Creation is safe against other processes doing the same.
// Opening a complete layout writes nothing: readers may open it through a
// read-only mount.
func OpenLayout(dir string, opts ...LayoutOption) (*Layout, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	l := &Layout{dir: abs, now: time.Now}
	for _, o := range opts {
		o(l)
	}
	if err := l.checkFolder(); err != nil {
		return nil, err
	}
	if _, err := os.Lstat(abs); errors.Is(err, fs.ErrNotExist) {
		if err := createLayout(abs); err != nil {
			return nil, err
		}
	}
	l.perm = permsUnder(abs)
	// An existing folder (an empty volume, or a layout from an older kiln)
	// is completed in place; oci-layout comes last, so a folder that has
	// one always has the rest.
	haveLayoutFile, err := l.checkLayoutFile()
	if err != nil {
		return nil, err
	}
	for _, d := range []string{filepath.Join(abs, "blobs", "sha256"), filepath.Join(abs, kilnDir)} {
		if err := mkdirAll(d, l.perm.dir); err != nil {
			if haveLayoutFile && (errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS)) {
				// A reader's read-only view of a complete layout made by
				// another tool; a writer finds out when it writes.
				continue
			}
			return nil, fmt.Errorf("creating layout %s: %w", abs, accessError(abs, "write", err))
		}
	}
	if err := l.ensureIndex(); err != nil {
		return nil, err
	}
	if !haveLayoutFile {
		if err := writeFileMode(filepath.Join(abs, layoutFile), []byte(layoutFileContent), l.perm.file); err != nil {
			return nil, accessError(abs, "write", err)
		}
	}
	return l, nil
}

// newLayoutPrefix names the sibling folder a new layout is made in.
func newLayoutPrefix(dir string) string { return "." + filepath.Base(dir) + ".kiln-new-" }

// createLayout makes a complete empty layout beside dir and renames it into
// place, so that a kill at any moment leaves either no folder or a whole
// layout, never one that a reader would refuse. Losing the race to another
// process is fine: its layout is used.
//
// Its modes follow the parent folder's (see perms): a layout made in a
// group-writable volume is group-writable and setgid like it.
func createLayout(dir string) error {
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("creating layout %s: %w", dir, accessError(parent, "write", err))
	}
	perm := permsUnder(parent)
	sweepNewLayouts(dir)
	tmp, err := os.MkdirTemp(parent, newLayoutPrefix(dir))
	if err != nil {
		return fmt.Errorf("creating layout %s: %w", dir, accessError(parent, "write", err))
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	if err := os.Chmod(tmp, perm.dir); err != nil {
		return err
	}
	for _, d := range []string{filepath.Join(tmp, "blobs", "sha256"), filepath.Join(tmp, kilnDir)} {
		if err := mkdirAll(d, perm.dir); err != nil {
			return fmt.Errorf("creating layout %s: %w", dir, err)
		}
	}
	if err := (&Layout{dir: tmp, perm: perm}).writeIndex(emptyIndex()); err != nil {
		return err
	}
	if err := writeFileMode(filepath.Join(tmp, layoutFile), []byte(layoutFileContent), perm.file); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, serr := os.Stat(filepath.Join(dir, layoutFile)); serr == nil {
			return nil // another process made it first
		}
		if errors.Is(err, fs.ErrExist) || errors.Is(err, syscall.ENOTEMPTY) {
			return nil // another process is making it; the caller completes it
		}
		return fmt.Errorf("creating layout %s: %w", dir, err)
	}
	return syncDir(parent)
}

// sweepNewLayouts removes new-layout folders that a killed process left
// beside dir. Only old ones: a young one may be another process's.
func sweepNewLayouts(dir string) {
	matches, _ := filepath.Glob(filepath.Join(filepath.Dir(dir), newLayoutPrefix(dir)+"*"))
	for _, m := range matches {
		if fi, err := os.Lstat(m); err == nil && fi.IsDir() && time.Since(fi.ModTime()) > 10*time.Minute {
			os.RemoveAll(m)
		}
	}
}

// OpenExistingLayout opens a layout that must already exist: for readers
// and checkers, which must not turn a typo or an unmounted volume into an
// empty cache.
func OpenExistingLayout(dir string, opts ...LayoutOption) (*Layout, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(abs, layoutFile)); err != nil {
		if errors.Is(err, fs.ErrPermission) {
			// A folder this user may not look into is not "no cache": a
			// build would silently pull everything, or fail offline
			// blaming the cache's contents.
			return nil, accessError(abs, "read", err)
		}
		return nil, fmt.Errorf("%s: %w: %v", abs, ErrNotLayout, err)
	}
	return OpenLayout(abs, opts...)
}

// Dir is the layout's absolute path.
func (l *Layout) Dir() string { return l.dir }

// checkFolder refuses a folder that holds something other than a layout:
// kiln must never scatter blobs into, or later prune, a user's files. A
// fresh volume's lost+found and dot files are fine.
func (l *Layout) checkFolder() error {
	entries, err := os.ReadDir(l.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("opening layout: %w", accessError(l.dir, "read", err))
	}
	var foreign []string
	for _, e := range entries {
		switch n := e.Name(); {
		case n == layoutFile:
			return nil
		case n == "lost+found", n == "blobs", n == indexFile, strings.HasPrefix(n, "."):
		default:
			foreign = append(foreign, n)
		}
	}
	if len(foreign) > 0 {
		return fmt.Errorf("%s: %w: no oci-layout file, and it holds other files (%s)", l.dir, ErrNotLayout, strings.Join(foreign[:min(len(foreign), 3)], ", "))
	}
	return nil
}

const layoutFileContent = `{"imageLayoutVersion":"1.0.0"}`

// checkLayoutFile reports whether the folder has an oci-layout file, and
// refuses one kiln cannot read.
func (l *Layout) checkLayoutFile() (bool, error) {
	data, err := os.ReadFile(filepath.Join(l.dir, layoutFile))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if errors.Is(err, fs.ErrPermission) {
		return false, accessError(filepath.Join(l.dir, layoutFile), "read", err)
	}
	if err != nil {
		return false, fmt.Errorf("%s: %w: %v", l.dir, ErrNotLayout, err)
	}
	var lf struct {
		Version string `json:"imageLayoutVersion"`
	}
	if err := json.Unmarshal(data, &lf); err != nil || lf.Version == "" {
		return false, fmt.Errorf("%s: %w: bad oci-layout file", l.dir, ErrNotLayout)
	}
	if !strings.HasPrefix(lf.Version, "1.") {
		return false, fmt.Errorf("%s: %w: layout version %q", l.dir, ErrNotLayout, lf.Version)
	}
	return true, nil
}

func (l *Layout) ensureIndex() error {
	path := filepath.Join(l.dir, indexFile)
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	lock, err := lockFile(context.Background(), filepath.Join(l.dir, kilnDir, indexLockFile), true, nil)
	if err != nil {
		return err
	}
	defer lock.unlock()
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	return l.writeIndex(emptyIndex())
}

func emptyIndex() *v1.IndexManifest {
	return &v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{}}
}

// BlobPath is where the blob with digest h lives.
func (l *Layout) BlobPath(h v1.Hash) string {
	return filepath.Join(l.dir, "blobs", h.Algorithm, h.Hex)
}

// HasBlob reports whether the blob is stored with the given size (size < 0:
// any size). It does not rehash: blobs are only ever renamed into place after
// their digest was checked.
func (l *Layout) HasBlob(h v1.Hash, size int64) bool {
	fi, err := os.Stat(l.BlobPath(h))
	return err == nil && fi.Mode().IsRegular() && (size < 0 || fi.Size() == size)
}

// OpenBlob opens a stored blob for reading. A blob this user may not read
// is an *AccessError.
func (l *Layout) OpenBlob(h v1.Hash) (*os.File, error) {
	if err := checkHash(h); err != nil {
		return nil, err
	}
	f, err := os.Open(l.BlobPath(h))
	if err != nil {
		return nil, accessError(l.BlobPath(h), "read", err)
	}
	return f, nil
}

// ReadBlob reads a small blob (a manifest, index or config) whole and checks
// its digest.
func (l *Layout) ReadBlob(h v1.Hash) ([]byte, error) {
	f, err := l.OpenBlob(h)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxManifestSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxManifestSize {
		return nil, fmt.Errorf("blob %s: larger than %d bytes, not a manifest", h, maxManifestSize)
	}
	if got := sha256.Sum256(data); hex.EncodeToString(got[:]) != h.Hex {
		return nil, fmt.Errorf("blob %s: %w", h, ErrDigestMismatch)
	}
	return data, nil
}

// PutBlob stores small bytes (a manifest or index kiln made) and returns
// their digest.
func (l *Layout) PutBlob(data []byte) (v1.Hash, error) {
	sum := sha256.Sum256(data)
	h := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	if l.HasBlob(h, int64(len(data))) {
		return h, nil
	}
	_, err := l.WriteBlob(context.Background(), h, int64(len(data)), bytes.NewReader(data))
	return h, err
}

// WriteBlob streams r into the layout as blob h. The bytes go to a temporary
// file beside the final place, are hashed on the way, fsynced, and renamed
// only if digest and size (size < 0: unknown) match. On any error, the
// temporary file is gone when WriteBlob returns.
func (l *Layout) WriteBlob(ctx context.Context, h v1.Hash, size int64, r io.Reader) (int64, error) {
	w, err := l.NewBlobWriter(h, size)
	if err != nil {
		return 0, err
	}
	return w.copyFrom(ctx, r)
}

// writeChecked is WriteBlob for r, a verifying reader that checks digest h
// and size itself (its last Read fails on a mismatch): the writer does not
// hash the bytes a second time.
func (l *Layout) writeChecked(ctx context.Context, h v1.Hash, size int64, r *verifyReader) (int64, error) {
	w, err := l.NewBlobWriter(h, size)
	if err != nil {
		return 0, err
	}
	w.h = nil
	return w.copyFrom(ctx, r)
}

// copyFrom writes r whole, then commits; on any error the blob is aborted.
func (w *BlobWriter) copyFrom(ctx context.Context, r io.Reader) (int64, error) {
	defer w.Abort()
	n, err := io.Copy(w, ctxReader{ctx, r})
	if err != nil {
		return n, err
	}
	return n, w.Commit()
}

// BlobWriter receives one blob. Write appends; Reset starts over (a server
// that ignored a Range request); Commit verifies and publishes; Abort (safe
// after Commit) removes the temporary file. A failed Commit aborts by
// itself; a writer that is not committed must be aborted, or its temporary
// file stays until the process ends and a sweep removes it (see
// RemoveDeadTemps).
//
// The writer holds an exclusive flock on its temporary file until Commit or
// Abort, which is how sweepers tell it from a killed writer's leftover.
type BlobWriter struct {
	l     *Layout
	f     *os.File
	h     hash.Hash // nil: the source checks the digest (writeChecked)
	want  v1.Hash
	size  int64
	n     int64
	final string
	done  bool
}

// NewBlobWriter starts writing blob want of the given size (< 0: unknown).
func (l *Layout) NewBlobWriter(want v1.Hash, size int64) (*BlobWriter, error) {
	if err := checkHash(want); err != nil {
		return nil, err
	}
	final := l.BlobPath(want)
	w := &BlobWriter{l: l, h: sha256.New(), want: want, size: size, final: final}
	f, err := createTemp(l.dir, filepath.Dir(final), tmpPrefix+want.Hex[:12]+"-")
	if err != nil {
		return nil, fmt.Errorf("creating temp blob for %s: %w", want, accessError(filepath.Dir(final), "write", w.noSpace(err)))
	}
	w.f = f
	return w, nil
}

func (w *BlobWriter) Write(p []byte) (int, error) {
	if w.size >= 0 && w.n+int64(len(p)) > w.size {
		return 0, fmt.Errorf("blob %s: %w: more than the %d bytes promised", w.want, ErrSizeMismatch, w.size)
	}
	n, err := w.f.Write(p)
	if w.h != nil {
		w.h.Write(p[:n])
	}
	w.n += int64(n)
	return n, w.noSpace(err)
}

// noSpace names the cache folder and the blob in an error that says the
// volume is full.
func (w *BlobWriter) noSpace(err error) error {
	what := "blob " + w.want.String()
	if w.size >= 0 {
		what += " (" + FormatBytes(w.size) + ")"
	}
	return noSpace(w.l.dir, what, err)
}

// Written is how many bytes were written since the start or the last Reset.
func (w *BlobWriter) Written() int64 { return w.n }

// Reset discards what was written.
func (w *BlobWriter) Reset() error {
	if err := w.f.Truncate(0); err != nil {
		return err
	}
	if _, err := w.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if w.h != nil {
		w.h.Reset()
	}
	w.n = 0
	return nil
}

// Commit checks size and digest, fsyncs, and renames the blob into place;
// on any error it aborts. If another process stored the same blob
// meanwhile, the rename replaces it with identical bytes; readers holding
// it open keep their copy.
func (w *BlobWriter) Commit() error {
	if w.done {
		return fmt.Errorf("blob %s: writer already committed or aborted", w.want)
	}
	if err := w.commit(); err != nil {
		w.Abort()
		return err
	}
	return nil
}

func (w *BlobWriter) commit() error {
	if w.size >= 0 && w.n != w.size {
		return fmt.Errorf("blob %s: %w: got %d bytes, want %d", w.want, ErrSizeMismatch, w.n, w.size)
	}
	if w.h != nil {
		if got := hex.EncodeToString(w.h.Sum(nil)); got != w.want.Hex {
			return fmt.Errorf("blob %s: %w: content hashes to sha256:%s", w.want, ErrDigestMismatch, got)
		}
	}
	markVerified(w.f, w.want, true) // checked whole on the way in, by w.h or by its source
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("syncing blob %s: %w", w.want, w.noSpace(err))
	}
	// Renamed before it is closed: the lock covers the temporary name for
	// as long as it exists.
	if err := os.Rename(w.f.Name(), w.final); err != nil {
		return fmt.Errorf("storing blob %s: %w", w.want, w.noSpace(err))
	}
	w.done = true
	err := w.f.Close()
	if serr := syncDir(filepath.Dir(w.final)); err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("storing blob %s: %w", w.want, w.noSpace(err))
	}
	return nil
}

// Abort drops the temporary file unless the blob was committed. The file
// is removed before it is closed, under the writer's lock.
func (w *BlobWriter) Abort() {
	if w.done {
		return
	}
	w.done = true
	os.Remove(w.f.Name())
	w.f.Close()
}

// RemoveBlob deletes a blob. Callers hold the exclusive use lock.
func (l *Layout) RemoveBlob(h v1.Hash) error {
	if err := checkHash(h); err != nil {
		return err
	}
	err := os.Remove(l.BlobPath(h))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// StoredBlob is one file under blobs/.
type StoredBlob struct {
	Hash v1.Hash
	Size int64
	Path string
	// Temp marks a temporary file of a write, live or a killed one's
	// leftover (TempFiles tells which), or a file whose name is no digest.
	Temp bool
}

// Blobs lists what is under blobs/sha256, including leftover temporary files
// and files whose names are not digests (Temp set, Hash zero).
func (l *Layout) Blobs() ([]StoredBlob, error) {
	dir := filepath.Join(l.dir, "blobs", "sha256")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := make([]StoredBlob, 0, len(entries))
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		b := StoredBlob{Size: info.Size(), Path: filepath.Join(dir, e.Name())}
		if h, err := v1.NewHash("sha256:" + e.Name()); err == nil && info.Mode().IsRegular() {
			b.Hash = h
		} else {
			b.Temp = true
		}
		out = append(out, b)
	}
	return out, nil
}

// ReadIndex returns the layout's index.json.
func (l *Layout) ReadIndex() (*v1.IndexManifest, error) {
	data, err := os.ReadFile(filepath.Join(l.dir, indexFile))
	if err != nil {
		return nil, err
	}
	var idx v1.IndexManifest
	if err := json.Unmarshal(data, &idx); err != nil {
		return nil, fmt.Errorf("%s: %w: index.json: %v", l.dir, ErrNotLayout, err)
	}
	if idx.Manifests == nil {
		idx.Manifests = []v1.Descriptor{}
	}
	return &idx, nil
}

// UpdateIndex applies fn to index.json under the exclusive index lock and
// replaces the file atomically. fn returns false to leave the file untouched.
func (l *Layout) UpdateIndex(ctx context.Context, fn func(*v1.IndexManifest) (bool, error)) error {
	l.indexMu.Lock()
	defer l.indexMu.Unlock()
	lock, err := lockFile(ctx, filepath.Join(l.dir, kilnDir, indexLockFile), true, nil)
	if err != nil {
		return err
	}
	defer lock.unlock()
	idx, err := l.ReadIndex()
	if err != nil {
		return err
	}
	before := slices.Clone(idx.Manifests)
	changed, err := fn(idx)
	if err != nil || !changed {
		return err
	}
	if l.retire {
		if err := l.recordRetired(before, idx.Manifests); err != nil {
			return err
		}
	}
	return l.writeIndex(idx)
}

func (l *Layout) writeIndex(idx *v1.IndexManifest) error {
	data, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return err
	}
	return writeFileMode(filepath.Join(l.dir, indexFile), append(data, '\n'), l.perm.file)
}

// LockShared takes the layout's "in use" lock in shared mode: blobs visible
// now are not deleted until the returned function is called. Builds and
// warmers hold it for their whole run. It needs no write access: the lock
// file is opened read-only, so a build may read a cache mounted read-only
// while a prune runs through another, read-write, mount of it (flock locks
// the file, whatever mount it is reached by). If the lock cannot be taken
// at all the error is ErrLockUnavailable, saying why; a reader may go on
// without it.
func (l *Layout) LockShared(ctx context.Context) (func() error, error) {
	unlock, err := l.lockUse(ctx, false, nil)
	if err != nil && ctx.Err() == nil {
		if why := lockUnavailable(filepath.Join(l.dir, kilnDir, useLockFile), err); why != nil {
			return nil, fmt.Errorf("%w: %w", ErrLockUnavailable, why)
		}
	}
	return unlock, err
}

// lockUnavailable says why the lock file path cannot be locked, if err is
// one no wait would end: no lock file and none may be made here, a lock
// file this user may not open, a filesystem without flock.
func lockUnavailable(path string, err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		err = errno // the path is said once
	}
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.EROFS):
		// .kiln itself missing, or the file, on a read-only mount.
		return fmt.Errorf("%s does not exist and cannot be created here: %w", path, err)
	case errors.Is(err, fs.ErrPermission):
		return accessError(path, "lock", err)
	case unsupportedLock(err):
		return fmt.Errorf("the filesystem holding %s does not support flock: %w", path, err)
	}
	return nil
}

// LockExclusive takes the "in use" lock alone (prune). waiting, if not nil,
// is called once when another process holds the lock.
func (l *Layout) LockExclusive(ctx context.Context, waiting func()) (func() error, error) {
	return l.lockUse(ctx, true, waiting)
}

func (l *Layout) lockUse(ctx context.Context, exclusive bool, waiting func()) (func() error, error) {
	lock, err := lockFile(ctx, filepath.Join(l.dir, kilnDir, useLockFile), exclusive, waiting)
	if err != nil {
		return nil, err
	}
	return lock.unlock, nil
}

// writeFileAtomic is writeFileMode with mode 0644.
func writeFileAtomic(path string, data []byte) error {
	return writeFileMode(path, data, defaultPerms.file)
}

// writeFileMode is writeFileIn for a file at the top of a layout.
func writeFileMode(path string, data []byte, mode fs.FileMode) error {
	return writeFileIn(filepath.Dir(path), path, data, mode)
}

// writeFileIn writes data to a temporary file in path's folder, fsyncs it,
// gives it mode and renames it over path, then fsyncs the folder. path is
// a file of the layout at root, at its top or in .kiln. The temporary file
// is locked like a blob writer's, so sweeps leave it alone while it lives,
// and is gone when writeFileIn returns.
func writeFileIn(root, path string, data []byte, mode fs.FileMode) error {
	dir := filepath.Dir(path)
	wrap := func(err error) error {
		return fmt.Errorf("writing %s: %w", path, noSpace(dir, filepath.Base(path), err))
	}
	f, err := createTemp(root, dir, tmpPrefix+filepath.Base(path)+"-")
	if err != nil {
		return wrap(err)
	}
	if err := writeAndRename(f, path, data, mode); err != nil {
		os.Remove(f.Name())
		f.Close()
		return wrap(err)
	}
	if err := f.Close(); err != nil {
		return wrap(err)
	}
	return syncDir(dir)
}

// writeAndRename fills f and renames it to path, leaving it open: the
// caller closes it after the rename, so its lock covers the temporary name
// for as long as the name exists.
func writeAndRename(f *os.File, path string, data []byte, mode fs.FileMode) error {
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return err
	}
	return nil
}

func checkHash(h v1.Hash) error {
	if h.Algorithm != "sha256" {
		return fmt.Errorf("%w: %q", ErrUnsupportedDigest, h.Algorithm)
	}
	if len(h.Hex) != 64 || strings.Trim(h.Hex, "0123456789abcdef") != "" {
		return fmt.Errorf("bad sha256 digest %q", h.Hex)
	}
	return nil
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

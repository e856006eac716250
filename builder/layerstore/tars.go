package layerstore

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"kiln/manifest"
)

// Where overlay cannot be mounted (container isolation in a pod, rootless),
// a stage is unpacked, and the store keeps what makes an unpack slow before
// its files are written: each layer's uncompressed tar, so a later unpack on
// this machine (or from this shared volume) neither fetches nor
// decompresses it. The tars are the blobs of an OCI layout of their own
// (TarsDir), named by their sha256, which is the layer's diff_id: they are
// written to a temporary file as a layer is read for an unpack and renamed
// in only when the stream ended whole and hashed to its diff_id (a kill -9
// leaves a temporary file that prune removes), and checked against it again
// whenever they are read.

// ErrDamagedTar marks an unpack whose stored tar did not match its diff_id
// at its end; the tar is removed by then, and unpacking again fetches the
// layer.
var ErrDamagedTar = errors.New("a stored layer tar is damaged")

// TarsDir is the folder of the stored uncompressed tars in a cache folder.
func TarsDir(cacheDir string) string { return filepath.Join(cacheDir, ".kiln", "unpacked", "tars") }

// Mounts says whether the store keeps layers unpacked for overlay mounts
// (root, overlay permitted); otherwise it keeps only uncompressed tars.
func (s *Store) Mounts() bool { return s.unpack != nil }

// HasTar says whether the uncompressed tar of the layer with diff_id d is
// stored.
func (s *Store) HasTar(d v1.Hash) bool {
	fi, err := os.Stat(s.tars.BlobPath(d))
	return err == nil && fi.Mode().IsRegular()
}

// TarImage returns img with layers whose Uncompressed stream comes from the
// store's tar when it has one, and is otherwise kept in the store as it is
// read. Only Layers differs from img: it is meant for unpacking. Only the
// layers of images read from a registry or a cache (manifest.IsVerified)
// are stored, not those this build made.
func (s *Store) TarImage(img v1.Image) (v1.Image, error) {
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	out := &tarImage{Image: img, layers: make([]v1.Layer, len(layers))}
	for i, l := range layers {
		out.layers[i] = l
		if !manifest.IsVerified(l) {
			continue
		}
		d, err := l.DiffID()
		if err != nil {
			return nil, err
		}
		out.layers[i] = &tarLayer{Layer: l, s: s, diffID: d}
	}
	return out, nil
}

type tarImage struct {
	v1.Image
	layers []v1.Layer
}

func (t *tarImage) Layers() ([]v1.Layer, error) { return append([]v1.Layer(nil), t.layers...), nil }

type tarLayer struct {
	v1.Layer
	s      *Store
	diffID v1.Hash
}

// Uncompressed reads the stored tar, checked against the diff_id, or the
// layer's own stream, copied into the store on the way.
func (t *tarLayer) Uncompressed() (io.ReadCloser, error) {
	f, err := t.s.tars.OpenBlob(t.diffID)
	if err == nil {
		t.s.tarsRead.Add(1)
		what := fmt.Sprintf("the layer store's tar of layer %s (%s)", t.diffID, f.Name())
		return &storedTar{ReadCloser: manifest.NewVerifyingReader(f, t.diffID, -1, what), s: t.s, diffID: t.diffID}, nil
	}
	rc, err := t.Layer.Uncompressed()
	if err != nil {
		return nil, err
	}
	w, err := t.s.tars.NewBlobWriter(t.diffID, -1)
	if err != nil {
		t.s.warnTar(err)
		return rc, nil
	}
	return &teeTar{rc: rc, w: w, s: t.s}, nil
}

// storedTar reads a stored tar; one that does not match its diff_id is
// removed, so that the next unpack fetches the layer again.
type storedTar struct {
	io.ReadCloser
	s      *Store
	diffID v1.Hash
}

// Close reads what the unpack left (all of it: a local file) so that any
// error of the unpack is put down to a damaged tar when it is one.
func (r *storedTar) Close() error {
	_, _ = io.Copy(io.Discard, r.ReadCloser)
	err := r.ReadCloser.Close()
	if errors.Is(err, manifest.ErrIntegrity) {
		_ = r.s.tars.RemoveBlob(r.diffID)
		err = fmt.Errorf("%w: %w (removed it: unpacking again fetches the layer)", ErrDamagedTar, err)
	}
	return err
}

// teeTar copies a layer's uncompressed stream into the store as it is
// read. A write that fails (a full volume) stops the copy, never the
// unpack.
type teeTar struct {
	rc  io.ReadCloser
	w   *manifest.BlobWriter
	s   *Store
	eof bool
}

func (t *teeTar) Read(p []byte) (int, error) {
	n, err := t.rc.Read(p)
	if n > 0 && t.w != nil {
		if _, werr := t.w.Write(p[:n]); werr != nil {
			t.w.Abort()
			t.w = nil
			t.s.warnTar(werr)
		}
	}
	if errors.Is(err, io.EOF) {
		t.eof = true
	}
	return n, err
}

// Close closes the layer's stream (which checks its digests) and stores the
// copy if the stream was read whole and checked.
func (t *teeTar) Close() error {
	err := t.rc.Close()
	if t.w == nil {
		return err
	}
	if err != nil || !t.eof {
		t.w.Abort()
		return err
	}
	if cerr := t.w.Commit(); cerr != nil { // it checks the diff_id too
		t.s.warnTar(cerr)
	} else {
		t.s.tarsKept.Add(1)
	}
	return nil
}

// TarCounts are how many layers this store has read from its tars, and
// how many tars it has kept, so far.
func (s *Store) TarCounts() (read, kept int64) { return s.tarsRead.Load(), s.tarsKept.Load() }

// warnTar logs, once per store, that a tar could not be stored.
func (s *Store) warnTar(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tarWarned {
		return
	}
	s.tarWarned = true
	s.log.Warn("layer store: could not keep a layer's uncompressed tar (the build goes on; the next one fetches it again)", "err", err)
}

// StoreTar stores l's uncompressed tar unless it is stored (kiln warm
// --unpack where overlay cannot be mounted). stored says whether this call
// did.
func (s *Store) StoreTar(l v1.Layer) (stored bool, err error) {
	d, err := l.DiffID()
	if err != nil {
		return false, err
	}
	if s.HasTar(d) {
		return false, nil
	}
	w, err := s.tars.NewBlobWriter(d, -1)
	if err != nil {
		return false, err
	}
	rc, err := l.Uncompressed()
	if err != nil {
		w.Abort()
		return false, err
	}
	_, err = io.Copy(w, rc)
	if cerr := rc.Close(); err == nil {
		err = cerr // the layer's digests are checked at its end
	}
	if err != nil {
		w.Abort()
		return false, err
	}
	if err := w.Commit(); err != nil {
		return false, err
	}
	return true, nil
}

// Tar is one stored uncompressed tar, for reports.
type Tar struct {
	DiffID v1.Hash
	Path   string
	Bytes  int64
}

// ListTars lists the stored tars (temporary files left out).
func ListTars(cacheDir string) ([]Tar, error) {
	l, err := manifest.OpenExistingLayout(TarsDir(cacheDir))
	if errors.Is(err, manifest.ErrNotLayout) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	blobs, err := l.Blobs()
	if err != nil {
		return nil, err
	}
	var out []Tar
	for _, b := range blobs {
		if !b.Temp {
			out = append(out, Tar{DiffID: b.Hash, Path: b.Path, Bytes: b.Size})
		}
	}
	return out, nil
}

// PruneTars removes the stored tars whose diff_id keep lacks, and the
// temporary files of killed writes. The caller holds the cache's exclusive
// lock, so no build is reading any.
func PruneTars(cacheDir string, keep map[v1.Hash]bool) (removed int, bytes int64, err error) {
	l, err := manifest.OpenExistingLayout(TarsDir(cacheDir))
	if errors.Is(err, manifest.ErrNotLayout) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, err
	}
	tars, err := ListTars(cacheDir)
	if err != nil {
		return 0, 0, err
	}
	for _, t := range tars {
		if keep[t.DiffID] {
			continue
		}
		if err := l.RemoveBlob(t.DiffID); err != nil {
			return removed, bytes, err
		}
		removed++
		bytes += t.Bytes
	}
	_, err = l.RemoveDeadTemps()
	return removed, bytes, err
}

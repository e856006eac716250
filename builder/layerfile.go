package builder

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
)

// layerFile is a layer being written to a file: the tar written to it is
// gzipped into the file, and both streams are hashed on the way, so that
// the finished layer knows its digest, size and diff_id without reading
// the file back (and decompressing it) as tarball.LayerFromOpener would.
type layerFile struct {
	path string
	f    *os.File
	gz   *gzip.Writer
	blob *hashingWriter // the file's bytes: digest and size
	tar  *hashingWriter // the tar's bytes: diff_id
}

func newLayerFile(path string, o *options) (*layerFile, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("creating a layer file: %w", err)
	}
	blob := newHashingWriter(f)
	gz, err := o.newGzip(blob) // no name, no mtime: the same tar gives the same bytes
	if err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	return &layerFile{path: path, f: f, gz: gz, blob: blob, tar: newHashingWriter(gz)}, nil
}

// Write adds bytes of the layer's tar.
func (lf *layerFile) Write(p []byte) (int, error) { return lf.tar.Write(p) }

// close ends the compressed stream and the file.
func (lf *layerFile) close() error {
	if err := lf.gz.Close(); err != nil {
		lf.f.Close()
		return fmt.Errorf("writing the layer: %w", err)
	}
	return lf.f.Close()
}

// abort removes the unfinished layer file.
func (lf *layerFile) abort() {
	_ = lf.f.Close()
	_ = os.Remove(lf.path)
}

// layer is the closed file as a layer of media type mt (gzipped).
func (lf *layerFile) layer(mt types.MediaType) v1.Layer {
	return &fileLayer{path: lf.path, digest: lf.blob.sum(), size: lf.blob.n, diffID: lf.tar.sum(), mt: mt}
}

// hashingWriter passes writes on to w, hashing and counting what w took.
type hashingWriter struct {
	w io.Writer
	h hash.Hash
	n int64
}

func newHashingWriter(w io.Writer) *hashingWriter {
	return &hashingWriter{w: w, h: sha256.New()}
}

func (hw *hashingWriter) Write(p []byte) (int, error) {
	n, err := hw.w.Write(p)
	hw.h.Write(p[:n])
	hw.n += int64(n)
	return n, err
}

func (hw *hashingWriter) sum() v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(hw.h.Sum(nil))}
}

// fileLayer is a gzipped layer this build wrote to a file, with the
// digests taken as it was written.
type fileLayer struct {
	path           string
	digest, diffID v1.Hash
	size           int64
	mt             types.MediaType
}

func (l *fileLayer) Digest() (v1.Hash, error)            { return l.digest, nil }
func (l *fileLayer) DiffID() (v1.Hash, error)            { return l.diffID, nil }
func (l *fileLayer) Size() (int64, error)                { return l.size, nil }
func (l *fileLayer) MediaType() (types.MediaType, error) { return l.mt, nil }
func (l *fileLayer) Compressed() (io.ReadCloser, error)  { return os.Open(l.path) }

// Uncompressed is the layer's tar, decompressed from the file.
func (l *fileLayer) Uncompressed() (io.ReadCloser, error) {
	f, err := os.Open(l.path)
	if err != nil {
		return nil, err
	}
	z, err := gzip.NewReader(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("layer %s: %w", l.path, err)
	}
	return &gunzipFile{Reader: z, f: f}, nil
}

// gunzipFile is a file's decompressed stream; Close closes both.
type gunzipFile struct {
	*gzip.Reader
	f *os.File
}

func (g *gunzipFile) Close() error {
	zerr := g.Reader.Close()
	if err := g.f.Close(); err != nil {
		return err
	}
	return zerr
}

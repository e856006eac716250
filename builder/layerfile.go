package builder

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"
	"sync"

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

	// A layer written behind (writeBehind): done is closed once it is
	// written, or err says why it is not.
	done chan struct{}
	err  error
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

// close ends the compressed stream and the file, read-only from then on:
// an output layout on its filesystem links it (manifest.CheckedFile).
func (lf *layerFile) close() error {
	if err := lf.gz.Close(); err != nil {
		lf.f.Close()
		return fmt.Errorf("writing the layer: %w", err)
	}
	if err := lf.f.Chmod(0o444); err != nil {
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

// writeBehind writes the layer's tar with write in a goroutine of its own
// (counted by pending), and closes the file. The layer (layer) can be
// handed on at once: what needs its bytes or digests waits for the write.
func (lf *layerFile) writeBehind(pending *sync.WaitGroup, write func(io.Writer) error) {
	lf.done = make(chan struct{})
	pending.Add(1)
	go func() {
		defer pending.Done()
		defer close(lf.done)
		if err := write(lf); err != nil {
			lf.abort()
			lf.err = fmt.Errorf("writing the layer of a RUN step: %w", err)
			return
		}
		lf.err = lf.close()
	}()
}

// wait waits for a layer written behind, and says whether it was.
func (lf *layerFile) wait() error {
	if lf.done != nil {
		<-lf.done
	}
	return lf.err
}

// layer is the closed file (or the file written behind) as a layer of
// media type mt (gzipped).
func (lf *layerFile) layer(mt types.MediaType) v1.Layer {
	if lf.done != nil {
		return &fileLayer{path: lf.path, mt: mt, behind: lf}
	}
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

	behind *layerFile // a layer still being written: its digests come from it once done
	once   sync.Once
	err    error
}

// written waits for a layer written behind and takes its digests.
func (l *fileLayer) written() error {
	if l.behind == nil {
		return nil
	}
	l.once.Do(func() {
		if l.err = l.behind.wait(); l.err == nil {
			l.digest, l.size, l.diffID = l.behind.blob.sum(), l.behind.blob.n, l.behind.tar.sum()
		}
	})
	return l.err
}

func (l *fileLayer) Digest() (v1.Hash, error) {
	err := l.written()
	return l.digest, err
}

func (l *fileLayer) DiffID() (v1.Hash, error) {
	err := l.written()
	return l.diffID, err
}

func (l *fileLayer) Size() (int64, error) {
	err := l.written()
	return l.size, err
}

func (l *fileLayer) MediaType() (types.MediaType, error) { return l.mt, nil }

func (l *fileLayer) Compressed() (io.ReadCloser, error) {
	if err := l.written(); err != nil {
		return nil, err
	}
	return os.Open(l.path)
}

// CheckedFile is the layer's file, whose digest was taken as it was
// written (manifest.CheckedFile): an output stores it without hashing it
// again, by a link where it can.
func (l *fileLayer) CheckedFile() (*os.File, error) {
	if err := l.written(); err != nil {
		return nil, err
	}
	return os.Open(l.path)
}

// Uncompressed is the layer's tar, decompressed from the file.
func (l *fileLayer) Uncompressed() (io.ReadCloser, error) {
	if err := l.written(); err != nil {
		return nil, err
	}
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

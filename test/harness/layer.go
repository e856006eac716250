package harness

import (
	"archive/tar"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// fastLayerSize is the size above which layers are stored in gzip without
// compression: random content does not compress, and level 1 would only
// cost time.
const fastLayerSize = 50 << 20

// layerModTime is the fixed mtime of every fixture file, for stable digests.
var layerModTime = time.Unix(946684800, 0) // 2000-01-01T00:00:00Z

// LayerSpec describes a deterministic layer: the same spec always gives the
// same blob, and different seeds give different blobs.
type LayerSpec struct {
	Seed  int64
	Size  int64 // bytes of file content, split evenly over the files
	Files int   // number of regular files; 0 means 1
}

// Layer returns a gzip tar layer (OCI media type) holding spec.Files files of
// incompressible content drawn from a generator seeded by spec.Seed,
// totalling spec.Size bytes. The content is regenerated as a stream each time
// it is read, so a large layer never sits in memory; computing its digests
// reads it twice.
func Layer(spec LayerSpec) (v1.Layer, error) {
	if spec.Size < 0 || spec.Files < 0 {
		return nil, fmt.Errorf("layer seed %d: negative size %d or files %d", spec.Seed, spec.Size, spec.Files)
	}
	level := gzip.BestSpeed
	if spec.Size > fastLayerSize {
		level = gzip.NoCompression
	}
	l, err := tarball.LayerFromOpener(spec.open,
		tarball.WithCompressionLevel(level),
		tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("layer seed %d: %w", spec.Seed, err)
	}
	return l, nil
}

// open streams the uncompressed tar through a pipe; closing the reader
// early stops the writing goroutine.
func (s LayerSpec) open() (io.ReadCloser, error) {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(s.writeTar(pw)) }()
	return pr, nil
}

func (s LayerSpec) writeTar(w io.Writer) error {
	tw := tar.NewWriter(w)
	dir := fmt.Sprintf("kiln-fixture/%d/", s.Seed)
	if err := tw.WriteHeader(s.header(dir, tar.TypeDir, 0o755, 0)); err != nil {
		return err
	}
	src := s.random()
	files := max(s.Files, 1)
	for i := range files {
		size := s.Size / int64(files)
		if int64(i) < s.Size%int64(files) {
			size++
		}
		name := fmt.Sprintf("%sfile-%04d", dir, i)
		if err := tw.WriteHeader(s.header(name, tar.TypeReg, 0o644, size)); err != nil {
			return err
		}
		if _, err := io.CopyN(tw, src, size); err != nil {
			return err
		}
	}
	return tw.Close()
}

func (s LayerSpec) header(name string, typ byte, mode, size int64) *tar.Header {
	return &tar.Header{
		Typeflag: typ,
		Name:     name,
		Mode:     mode,
		Size:     size,
		ModTime:  layerModTime,
		Format:   tar.FormatUSTAR,
	}
}

// random returns the content generator for this seed. ChaCha8 is fast
// enough to generate gigabytes per second.
func (s LayerSpec) random() io.Reader {
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], uint64(s.Seed))
	return rand.NewChaCha8(seed)
}

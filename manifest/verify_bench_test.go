package manifest

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// BenchmarkLayerRead reads every layer of a 64 MiB image to its end, as an
// unpack does: through go-containerregistry as it comes (no check of the
// uncompressed tar, stdlib gzip) and through VerifiedImage (blob digest and
// size, diff_id, klauspost gzip). Run side by side: go test -bench LayerRead ./manifest/
func BenchmarkLayerRead(b *testing.B) {
	mem := benchImage(b)
	// From an OCI layout on disk, as the warm cache serves bases: gzip
	// blobs read from files.
	p, err := layout.Write(b.TempDir(), empty.Index)
	if err != nil {
		b.Fatal(err)
	}
	if err := p.AppendImage(mem); err != nil {
		b.Fatal(err)
	}
	d, _ := mem.Digest()
	img, err := p.Image(d)
	if err != nil {
		b.Fatal(err)
	}
	verified, err := VerifiedImage(img, "bench")
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		img  v1.Image
	}{{"plain", img}, {"verified", verified}} {
		b.Run(tc.name, func(b *testing.B) {
			layers, _ := tc.img.Layers()
			b.SetBytes(64 << 20)
			for b.Loop() {
				for _, l := range layers {
					rc, err := l.Uncompressed()
					if err != nil {
						b.Fatal(err)
					}
					if _, err := io.Copy(io.Discard, rc); err != nil {
						b.Fatal(err)
					}
					if err := rc.Close(); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// benchImage has four 16 MiB layers of files that compress as programs and
// text do (about 3:1), gzipped: what unpacking a real base reads.
func benchImage(b *testing.B) v1.Image {
	rng := rand.New(rand.NewPCG(1, 2))
	words := []string{"kiln ", "layer ", "0x7f454c46 ", "func ", "return ", "\n", "if err != nil ", "{ ", "} ", "static ", "int "}
	var layers []v1.Layer
	for i := range 4 {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for f := 0; buf.Len() < 16<<20; f++ {
			var body bytes.Buffer
			for body.Len() < 256<<10 {
				if rng.IntN(4) == 0 {
					fmt.Fprintf(&body, "%x", rng.Uint64())
				}
				body.WriteString(words[rng.IntN(len(words))])
			}
			tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("l%d/f%d", i, f), Mode: 0o644, Size: int64(body.Len()), Typeflag: tar.TypeReg})
			tw.Write(body.Bytes())
		}
		tw.Close()
		data := buf.Bytes()
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
		if err != nil {
			b.Fatal(err)
		}
		layers = append(layers, l)
	}
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		b.Fatal(err)
	}
	return img
}

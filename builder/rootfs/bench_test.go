package rootfs

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"path"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"

	"kiln/manifest"
)

var benchFiles = flag.Int("rootfs.files", 50000, "files in BenchmarkUnpack's big layer")

// BenchmarkUnpack unpacks an image shaped like bench/runseed's run-50k (a
// small base layer, then 50,000 files of 100 B–3 KiB of incompressible
// content in 1,000 folders), gzipped and read through
// manifest.VerifiedImage as a build reads a cached base: decompression and
// both digest checks included. Each iteration unpacks into an empty folder
// of TMPDIR (put it on tmpfs to leave the disk out).
//
//	go test -run '^$' -bench Unpack -benchtime 3x -cpuprofile cpu.prof ./builder/rootfs
func BenchmarkUnpack(b *testing.B) {
	img := benchImage(b, *benchFiles)
	for _, fallback := range []bool{false, true} {
		b.Run(resolverName(fallback), func(b *testing.B) {
			var entries int
			for b.Loop() {
				b.StopTimer()
				r, err := Open(b.TempDir())
				if err != nil {
					b.Fatal(err)
				}
				r.noOpenat2 = fallback
				b.StartTimer()
				stats, err := r.Unpack(context.Background(), img)
				if err != nil {
					b.Fatal(err)
				}
				entries = stats.Entries
			}
			b.ReportMetric(float64(entries), "entries/op")
		})
	}
}

func resolverName(fallback bool) string {
	if fallback {
		return "walk"
	}
	return "openat2"
}

var benchImages sync.Map // files → v1.Image

func benchImage(b *testing.B, files int) v1.Image {
	if img, ok := benchImages.Load(files); ok {
		return img.(v1.Image)
	}
	small := benchLayer(b, func(tw *tar.Writer) {
		for _, d := range []string{"bin", "etc", "tmp", "usr", "usr/lib"} {
			benchHeader(b, tw, &tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755})
		}
		benchHeader(b, tw, &tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755, Size: 1 << 20})
		tw.Write(make([]byte, 1<<20))
		for _, a := range []string{"sh", "ls", "cat"} {
			benchHeader(b, tw, &tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777})
		}
	})
	big := benchLayer(b, func(tw *tar.Writer) {
		sizes := rand.New(rand.NewPCG(31, 0x6b696c6e))
		var seed [32]byte
		binary.LittleEndian.PutUint64(seed[:], 31)
		content := rand.NewChaCha8(seed)
		data := make([]byte, 3<<10)
		benchHeader(b, tw, &tar.Header{Typeflag: tar.TypeDir, Name: "usr/lib/bench/", Mode: 0o755})
		const dirs = 1000
		per := (files + dirs - 1) / dirs
		last := ""
		for i := range files {
			d := i / per
			p := fmt.Sprintf("usr/lib/bench/a%02d/b%02d/f%05d.dat", d/20, d%20, i)
			if dir := path.Dir(p); dir != last {
				if d%20 == 0 {
					benchHeader(b, tw, &tar.Header{Typeflag: tar.TypeDir, Name: path.Dir(dir) + "/", Mode: 0o755})
				}
				benchHeader(b, tw, &tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: 0o755})
				last = dir
			}
			size := 100 + sizes.IntN(3<<10-100+1)
			_, _ = content.Read(data[:size])
			benchHeader(b, tw, &tar.Header{Typeflag: tar.TypeReg, Name: p, Mode: 0o644, Size: int64(size)})
			tw.Write(data[:size])
		}
	})
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), small, big)
	if err != nil {
		b.Fatal(err)
	}
	verified, err := manifest.VerifiedImage(img, "bench")
	if err != nil {
		b.Fatal(err)
	}
	benchImages.Store(files, verified)
	return verified
}

func benchHeader(b *testing.B, tw *tar.Writer, hdr *tar.Header) {
	hdr.ModTime = time.Unix(946684800, 0)
	hdr.Format = tar.FormatPAX
	if err := tw.WriteHeader(hdr); err != nil {
		b.Fatal(err)
	}
}

// benchLayer is a gzipped layer held in memory, as a cached blob is in the
// page cache.
func benchLayer(b *testing.B, fill func(*tar.Writer)) v1.Layer {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	fill(tw)
	if err := tw.Close(); err != nil {
		b.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		b.Fatal(err)
	}
	data := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		b.Fatal(err)
	}
	return l
}

package builder

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// TestOpenArchive checks which files ADD unpacks: a tar, plain or
// compressed in one of the formats BuildKit detects, and nothing else.
func TestOpenArchive(t *testing.T) {
	tarball := tarOf(t, "hello.txt", "hello\n")
	text := []byte("just text, long enough to be no tar header at all\n")
	tests := []struct {
		name string
		data []byte
		want bool
	}{
		{name: "tar", data: tarball, want: true},
		{name: "gzip", data: gzipOf(t, tarball), want: true},
		{name: "xz", data: xzOf(t, tarball), want: true},
		{name: "zstd", data: zstdOf(t, tarball), want: true},
		{name: "zstd after a skippable frame", data: append(skippableFrame(), zstdOf(t, tarball)...), want: true},
		{name: "text", data: text},
		{name: "empty"},
		{name: "gzip of text", data: gzipOf(t, text)},
		{name: "xz of text", data: xzOf(t, text)},
		{name: "zstd of text", data: zstdOf(t, text)},
		{name: "truncated xz", data: xzOf(t, tarball)[:24]},
		{name: "xz magic alone", data: xzMagic},
		{name: "zstd magic alone", data: zstdMagic},
		{name: "gzip magic without deflate", data: []byte{0x1f, 0x8b, 0x07, 0, 0, 0, 0, 0, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "f")
			if err := os.WriteFile(p, tt.data, 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			r, ok := openArchive(f)
			if ok != tt.want {
				t.Fatalf("openArchive says archive %v, want %v", ok, tt.want)
			}
			if !ok {
				return
			}
			defer r.Close()
			hdr, err := tar.NewReader(r).Next()
			if err != nil || hdr.Name != "hello.txt" {
				t.Fatalf("first entry %v, %v; want hello.txt", hdr, err)
			}
		})
	}
}

func tarOf(t *testing.T, name, body string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(tw, body); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gzipOf(t *testing.T, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func xzOf(t *testing.T, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := xz.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zstdOf(t *testing.T, data []byte) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(data, nil)
}

// skippableFrame is a zstd skippable frame (RFC 8878, 3.1.2) of 4 bytes.
func skippableFrame() []byte {
	b := binary.LittleEndian.AppendUint32(nil, 0x184d2a53)
	b = binary.LittleEndian.AppendUint32(b, 4)
	return append(b, "kiln"...)
}

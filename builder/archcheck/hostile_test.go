package archcheck

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"

	"kiln/platform"
)

func TestCheckLayerHostile(t *testing.T) {
	t.Parallel()
	amd64 := bin(t, "amd64")
	valid := layerTar(t, exe("usr/bin/app", amd64))
	tests := []struct {
		name    string
		stream  []byte
		wantErr error    // nil: must succeed; errAny: any error
		found   []string // paths, when it succeeds
	}{
		{
			name:    "huge declared size, short data",
			stream:  layerTar(t, entry{name: "usr/bin/app", typ: tar.TypeReg, mode: 0o755, body: amd64[:100], size: 1 << 40}),
			wantErr: io.ErrUnexpectedEOF,
		},
		{
			name:    "declared size past the data of a file not read",
			stream:  layerTar(t, entry{name: "data.bin", typ: tar.TypeReg, mode: 0o644, body: []byte("abc"), size: 1 << 40}),
			wantErr: io.ErrUnexpectedEOF,
		},
		{
			name:    "short ELF candidate cut inside its header",
			stream:  layerTar(t, entry{name: "usr/bin/app", typ: tar.TypeReg, mode: 0o755, body: amd64[:10], size: 64}),
			wantErr: io.ErrUnexpectedEOF,
		},
		{
			name:    "huge pax header",
			stream:  hugePAX(),
			wantErr: tar.ErrFieldTooLong,
		},
		{
			name:    "stream cut inside a header block",
			stream:  valid[:700],
			wantErr: errAny,
		},
		{
			name:    "garbage",
			stream:  bytes.Repeat([]byte("not a tar "), 200),
			wantErr: errAny,
		},
		{
			name:    "corrupt checksum",
			stream:  corruptChecksum(valid),
			wantErr: errAny,
		},
		{
			name:   "empty stream",
			stream: nil,
		},
		{
			name:   "end of archive only",
			stream: make([]byte, 1024),
		},
		{
			name:   "names leading out of the root are checked where they land",
			stream: layerTar(t, exe("../../../usr/bin/app", amd64), file(".wh.", nil), dir("/")),
			found:  []string{"/usr/bin/app"},
		},
		{
			name:   "many whiteouts",
			stream: manyWhiteouts(t, 20_000),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := CheckLayer(context.Background(), bytes.NewReader(tt.stream), platform.MustParse("arm64"), Options{})
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("err = %v", err)
			case tt.wantErr == errAny && err == nil, tt.wantErr != nil && tt.wantErr != errAny && !errors.Is(err, tt.wantErr):
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			case err != nil && rep != nil:
				t.Errorf("a report with an error: %+v", rep)
			case err == nil:
				var found []string
				for _, f := range rep.Findings {
					found = append(found, f.Path)
				}
				if fmt.Sprint(found) != fmt.Sprint(tt.found) {
					t.Errorf("findings %q, want %q", found, tt.found)
				}
			}
		})
	}
}

// errAny stands for any error in a table.
var errAny = errors.New("any error")

// hugePAX is a tar whose first entry is a pax header claiming a gigabyte of
// records, two megabytes of which follow.
func hugePAX() []byte {
	hdr := &tar.Header{Name: "./PaxHeaders/x", Typeflag: tar.TypeXHeader, Size: 1 << 30, Mode: 0o644}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	// Writing a TypeXHeader is refused by tar.Writer; forge it via a regular
	// header and patch the type flag.
	hdr.Typeflag = tar.TypeReg
	if err := tw.WriteHeader(hdr); err != nil {
		panic(err)
	}
	b := buf.Bytes()[:512]
	b[156] = tar.TypeXHeader
	fixChecksum(b)
	return append(b, bytes.Repeat([]byte("30 path=usr/bin/app/xxxxxxxxx\n"), 2<<20/30)...)
}

func corruptChecksum(layer []byte) []byte {
	b := append([]byte(nil), layer...)
	b[148] ^= 0x01
	return b
}

// fixChecksum recomputes the checksum of a 512-byte ustar header block.
func fixChecksum(b []byte) {
	copy(b[148:156], "        ")
	var sum int64
	for _, c := range b[:512] {
		sum += int64(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
}

func manyWhiteouts(t *testing.T, n int) []byte {
	entries := make([]entry, 0, n)
	for i := range n {
		entries = append(entries, file(fmt.Sprintf("d%d/.wh.f%d", i%100, i), nil))
	}
	return layerTar(t, entries...)
}

// TestCheckLayerStreams feeds a layer holding a 256 MiB executable through a
// pipe: the check must read it without holding it.
func TestCheckLayerStreams(t *testing.T) {
	t.Parallel()
	const size = 256 << 20
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		head := bin(t, "amd64")[:headerSize]
		err := tw.WriteHeader(&tar.Header{Name: "usr/bin/big", Typeflag: tar.TypeReg, Mode: 0o755, Size: size})
		if err == nil {
			_, err = tw.Write(head)
		}
		if err == nil {
			_, err = io.CopyN(tw, zeros{}, size-headerSize)
		}
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	rep, err := CheckLayer(context.Background(), pr, platform.MustParse("arm64"), Options{})
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Findings) != 1 || rep.Findings[0].Path != "/usr/bin/big" {
		t.Errorf("findings %+v", rep.Findings)
	}
	// Other tests run in parallel, so allow for them; the file alone is 256 MiB.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
		t.Errorf("allocated %d MiB reading a 256 MiB file", alloc>>20)
	}
}

type zeros struct{}

func (zeros) Read(b []byte) (int, error) {
	clear(b)
	return len(b), nil
}

func TestCheckLayerCancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	stream := layerTar(t, exe("usr/bin/app", []byte("#!/bin/sh\n")))
	if _, err := CheckLayer(ctx, bytes.NewReader(stream), platform.MustParse("arm64"), Options{}); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}

func TestCheckLayerErrorNamesFile(t *testing.T) {
	t.Parallel()
	stream := layerTar(t, entry{name: "usr/bin/app", typ: tar.TypeReg, mode: 0o755, body: []byte("\x7fEL"), size: 64})
	_, err := CheckLayer(context.Background(), bytes.NewReader(stream), platform.MustParse("arm64"), Options{})
	if err == nil || !strings.Contains(err.Error(), "/usr/bin/app") {
		t.Errorf("err = %v, want one naming /usr/bin/app", err)
	}
}

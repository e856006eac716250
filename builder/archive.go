package builder

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"kiln/builder/rootfs"
)

// extract copies the entries of a local tar (plain or compressed: see
// openArchive) into dest, as ADD does. false: host is not an archive and is
// copied as a file.
func (cw *copyWriter) extract(host, dest string) (bool, error) {
	f, err := os.Open(host)
	if err != nil {
		return false, err
	}
	defer f.Close()
	r, ok := openArchive(f)
	if !ok {
		return false, nil
	}
	defer r.Close()
	if err := cw.mkdirs(dest); err != nil {
		return true, err
	}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return true, nil
		}
		if err != nil {
			return true, fmt.Errorf("extracting %s: %w", path.Base(host), err)
		}
		if err := cw.archiveEntry(hdr, tr, dest); err != nil {
			return true, fmt.Errorf("extracting %s: %w", path.Base(host), err)
		}
	}
}

// The compressions ADD undoes, by their magic numbers: those BuildKit's
// unpacking detects (solver/llbsolver/file/unpack.go isArchivePath →
// moby/go-archive compression.Detect), so that a Dockerfile gets the same
// files from both.
var (
	gzipMagic  = []byte{0x1f, 0x8b, 0x08}
	bzip2Magic = []byte("BZh")
	xzMagic    = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
	zstdMagic  = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// zstdMaxWindow bounds the memory a zstd archive may ask for, as the zstd
// tool's own default limit for decompression does (128 MiB).
const zstdMaxWindow = 128 << 20

// openArchive detects a tar, uncompressed or compressed with gzip, bzip2,
// xz or zstd, and returns its decompressed stream. false: f is no tar (a
// compressed file that does not hold one is none either).
func openArchive(f *os.File) (io.ReadCloser, bool) {
	br := bufio.NewReader(f)
	magic, _ := br.Peek(8)
	r, err := decompress(br, magic)
	if err != nil {
		return nil, false
	}
	tb := bufio.NewReader(r)
	hdr, err := tb.Peek(512)
	if err != nil || !tarHeader(hdr) {
		r.Close()
		return nil, false
	}
	return readCloser{tb, r.Close}, true
}

// decompress undoes the compression magic announces, if any.
func decompress(r io.Reader, magic []byte) (io.ReadCloser, error) {
	switch {
	case bytes.HasPrefix(magic, gzipMagic):
		return gzip.NewReader(r)
	case bytes.HasPrefix(magic, bzip2Magic):
		return io.NopCloser(bzip2.NewReader(r)), nil
	case bytes.HasPrefix(magic, xzMagic):
		x, err := xz.NewReader(r)
		if err != nil {
			return nil, err
		}
		return io.NopCloser(x), nil
	case zstdFrame(magic):
		z, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(zstdMaxWindow))
		if err != nil {
			return nil, err
		}
		return readCloser{z, func() error { z.Close(); return nil }}, nil
	}
	return io.NopCloser(r), nil
}

// zstdFrame tells a zstd frame, or a skippable frame (magic 0x184D2A5?,
// little-endian), which go-archive's detection accepts as zstd too.
func zstdFrame(magic []byte) bool {
	if bytes.HasPrefix(magic, zstdMagic) {
		return true
	}
	return len(magic) >= 4 && magic[0]&0xf0 == 0x50 && bytes.Equal(magic[1:4], []byte{0x2a, 0x4d, 0x18})
}

// tarHeader tells whether the first 512 bytes of a stream begin a tar.
func tarHeader(hdr []byte) bool {
	if _, err := tar.NewReader(bytes.NewReader(hdr)).Next(); err == nil {
		return true
	}
	return bytes.Equal(hdr[257:262], []byte("ustar"))
}

// readCloser reads from one reader and closes with a function.
type readCloser struct {
	io.Reader
	close func() error
}

func (r readCloser) Close() error { return r.close() }

// archiveEntry writes one entry of an extracted archive under dest. Names
// cannot leave dest: they are cleaned as absolute paths first.
func (cw *copyWriter) archiveEntry(hdr *tar.Header, body io.Reader, dest string) error {
	name := path.Clean("/" + hdr.Name)
	if name == "/" {
		return nil
	}
	if err := rootfs.CheckName(name[1:]); err != nil {
		return err
	}
	target := path.Join(dest, name)
	// Folders the archive implies without an entry of their own are 0755
	// and root's, --chown or not, as go-archive's Unpack makes them
	// (createImpliedDirectories: IDMap.RootPair); dest is made already.
	if err := cw.mkdirsOwned(path.Dir(target), nil); err != nil {
		return err
	}
	e := entry{name: target, mode: hdr.Mode & 0o7777, uid: hdr.Uid, gid: hdr.Gid, mtime: hdr.ModTime}
	if cw.own != nil {
		e.uid, e.gid = cw.own.uid, cw.own.gid
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		e.typ = tar.TypeDir
		cw.written[target] = true
	case tar.TypeReg, tar.TypeRegA:
		e.typ, e.size = tar.TypeReg, hdr.Size
	case tar.TypeSymlink:
		e.typ, e.link = tar.TypeSymlink, hdr.Linkname
	case tar.TypeLink:
		e.typ, e.link = tar.TypeLink, tarName(path.Join(dest, path.Clean("/"+hdr.Linkname)), tar.TypeReg)
	default:
		cw.b.o.log.Warn("skipping an archive entry of unsupported type", "path", target, "type", string(hdr.Typeflag))
		return nil
	}
	return cw.lw.write(e, body)
}

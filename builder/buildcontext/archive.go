package buildcontext

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// fromArchiveFile extracts a tar file (maybe compressed) into a new folder.
func fromArchiveFile(ctx context.Context, file string, opts Options) (*Context, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := decompress(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return fromTar(ctx, r, opts)
}

// fromStream takes a tar (maybe compressed) from r (stdin, a download) or,
// like `docker build - < Dockerfile`, a lone Dockerfile.
func fromStream(ctx context.Context, r io.Reader, opts Options) (*Context, error) {
	r, err := decompress(r)
	if err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(r, tarBlock)
	if isTar(br) {
		return fromTar(ctx, br, opts)
	}
	if filepath.IsAbs(opts.Dockerfile) {
		return nil, fmt.Errorf("a lone Dockerfile was given as the context, and another one as %s: give one", opts.Dockerfile)
	}
	c, err := newTemp(opts)
	if err != nil {
		return nil, err
	}
	if err := writeDockerfile(c.root, opts.Dockerfile, br); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func fromTar(ctx context.Context, r io.Reader, opts Options) (*Context, error) {
	c, err := newTemp(opts)
	if err != nil {
		return nil, err
	}
	if err := extractTar(ctx, r, c.root); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

const tarBlock = 512

// isTar reports whether br starts with a tar header block, as Docker's
// IsArchive decides between a context and a lone Dockerfile on stdin. Only
// the block's checksum is checked: the entry itself may need more than one
// block (PAX headers), which tar.Reader would have to read first.
func isTar(br *bufio.Reader) bool {
	block, err := br.Peek(tarBlock)
	if err != nil {
		return false
	}
	want, err := strconv.ParseUint(strings.Trim(string(block[148:156]), " \x00"), 8, 64)
	if err != nil {
		return false
	}
	var unsigned, signed int64
	for i, b := range block {
		if i >= 148 && i < 156 {
			b = ' '
		}
		unsigned += int64(b)
		signed += int64(int8(b))
	}
	return int64(want) == unsigned || int64(want) == signed
}

// decompress picks a decompressor by magic bytes, whatever the file is named.
func decompress(r io.Reader) (io.Reader, error) {
	br := bufio.NewReader(r)
	magic, _ := br.Peek(6)
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		return gzip.NewReader(br)
	case bytes.HasPrefix(magic, []byte("BZh")):
		return bzip2.NewReader(br), nil
	case bytes.HasPrefix(magic, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}):
		return nil, fmt.Errorf("%w: xz-compressed tar", ErrUnsupportedSource)
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return nil, fmt.Errorf("%w: zstd-compressed tar", ErrUnsupportedSource)
	}
	return br, nil
}

// writeDockerfile streams r into <root>/<name>.
func writeDockerfile(root, name string, r io.Reader) error {
	dir, err := os.OpenRoot(root)
	if err != nil {
		return err
	}
	defer dir.Close()
	if parent := parentRel(name); parent != "" {
		if err := dir.MkdirAll(parent, 0o755); err != nil {
			return err
		}
	}
	f, err := dir.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

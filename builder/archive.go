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

	"kiln/builder/rootfs"
)

// extract copies the entries of a local tar (plain, gzip or bzip2) into
// dest, as ADD does. false: host is not an archive and is copied as a file.
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

// openArchive detects a tar, decompressing gzip and bzip2.
func openArchive(f *os.File) (io.Reader, bool) {
	br := bufio.NewReader(f)
	magic, _ := br.Peek(3)
	var r io.Reader = br
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		gz, err := gzip.NewReader(br)
		if err != nil {
			return nil, false
		}
		r = gz
	case bytes.HasPrefix(magic, []byte("BZh")):
		r = bzip2.NewReader(br)
	}
	tb := bufio.NewReader(r)
	hdr, err := tb.Peek(512)
	if err != nil {
		return nil, false
	}
	if _, err := tar.NewReader(bytes.NewReader(hdr)).Next(); err != nil && !bytes.Equal(hdr[257:262], []byte("ustar")) {
		return nil, false
	}
	return tb, true
}

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
	if err := cw.mkdirs(path.Dir(target)); err != nil {
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

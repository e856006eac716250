package builder

import (
	"archive/tar"
	"fmt"
	"io"
	"os"
	"path"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"kiln/builder/rootfs"
)

// layerWriter streams one layer's tar, gzipped, to a file: file contents are copied
// from their source as they are written, never held in memory.
type layerWriter struct {
	lf    *layerFile
	tw    *tar.Writer
	epoch *time.Time // every entry's mtime when set (reproducible builds)
	n     int
}

func newLayerWriter(path string, epoch *time.Time, o *options) (*layerWriter, error) {
	lf, err := newLayerFile(path, o)
	if err != nil {
		return nil, err
	}
	return &layerWriter{lf: lf, tw: tar.NewWriter(lf), epoch: epoch}, nil
}

// entry is one tar entry to write: its container path (absolute, clean),
// type and metadata. A regular file's content is read from body.
type entry struct {
	name     string
	typ      byte
	mode     int64 // permission and setuid/setgid/sticky bits
	uid, gid int
	size     int64
	link     string
	mtime    time.Time
}

// write adds e, reading size bytes of content from body for a regular file.
// A name appliers would read as a whiteout (COPY x /etc/.wh.passwd) is
// refused: it would delete a file rather than add one.
func (lw *layerWriter) write(e entry, body io.Reader) error {
	if err := rootfs.CheckName(e.name); err != nil {
		return err
	}
	hdr := &tar.Header{
		Name: tarName(e.name, e.typ), Typeflag: e.typ, Mode: e.mode,
		Uid: e.uid, Gid: e.gid, Linkname: e.link, ModTime: e.mtime,
	}
	if lw.epoch != nil {
		hdr.ModTime = *lw.epoch
	}
	if e.typ == tar.TypeReg {
		hdr.Size = e.size
	}
	if err := lw.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("writing %s to the layer: %w", e.name, err)
	}
	lw.n++
	if e.typ != tar.TypeReg {
		return nil
	}
	n, err := io.Copy(lw.tw, body)
	if err == nil && n != e.size {
		err = fmt.Errorf("size changed while copying: %d bytes, expected %d", n, e.size)
	}
	if err != nil {
		return fmt.Errorf("writing %s to the layer: %w", e.name, err)
	}
	return nil
}

// tarName is the name of an entry in a layer: relative, folders with "/".
func tarName(name string, typ byte) string {
	n := path.Clean("/" + name)[1:]
	if typ == tar.TypeDir {
		n += "/"
	}
	return n
}

// abort removes the unfinished layer file.
func (lw *layerWriter) abort() { lw.lf.abort() }

// finish closes the tar and returns it as a layer of media type mt, or nil
// when nothing was written.
func (lw *layerWriter) finish(mt types.MediaType) (v1.Layer, error) {
	if err := lw.tw.Close(); err != nil {
		lw.abort()
		return nil, err
	}
	if err := lw.lf.close(); err != nil {
		_ = os.Remove(lw.lf.path)
		return nil, err
	}
	if lw.n == 0 {
		_ = os.Remove(lw.lf.path)
		return nil, nil
	}
	return lw.lf.layer(mt), nil
}

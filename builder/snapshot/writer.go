package snapshot

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// copyBufferSize bounds the memory one file's content takes while streamed.
const copyBufferSize = 128 << 10

// xattrRecord prefixes the PAX records that carry extended attributes.
const xattrRecord = "SCHILY.xattr."

// inode names one file across its hardlinks.
type inode struct{ dev, ino uint64 }

// layerWriter writes a sorted change list as a layer tar, reading each
// entry from the directory src as it is now.
type layerWriter struct {
	src   string
	epoch *time.Time
	ids   func(uid, gid int) (int, int) // Options.MapIDs
	tw    *tar.Writer
	links map[inode]string // the first name written for each inode
	buf   []byte
	stats *Stats
}

func newLayerWriter(src string, opts Options, out io.Writer, stats *Stats) *layerWriter {
	return &layerWriter{
		src:   src,
		epoch: opts.SourceDateEpoch,
		ids:   opts.MapIDs,
		tw:    tar.NewWriter(out),
		links: map[inode]string{},
		buf:   make([]byte, copyBufferSize),
		stats: stats,
	}
}

// write writes the changes and closes the tar (not out).
func (w *layerWriter) write(ctx context.Context, changes []change) error {
	for _, c := range changes {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := w.writeChange(c); err != nil {
			return fmt.Errorf("writing /%s to the layer: %w", c.rel, err)
		}
	}
	if err := w.tw.Close(); err != nil {
		return fmt.Errorf("finishing the layer: %w", err)
	}
	return nil
}

func (w *layerWriter) writeChange(c change) error {
	switch c.kind {
	case kindWhiteout:
		w.stats.Whiteouts++
		return w.tw.WriteHeader(w.marker(c.name))
	case kindOpaque:
		w.stats.Opaque++
		return w.tw.WriteHeader(w.marker(c.name))
	}
	return w.writeEntry(c)
}

// marker is the header of a whiteout or opaque marker: an empty file whose
// metadata means nothing, so it is fixed.
func (w *layerWriter) marker(name string) *tar.Header {
	return &tar.Header{Name: name, Typeflag: tar.TypeReg, ModTime: w.clamp(time.Unix(0, 0))}
}

// writeEntry writes c as it is in src (or at c.from), content streamed.
func (w *layerWriter) writeEntry(c change) error {
	host := c.from
	if host == "" {
		host = filepath.Join(w.src, filepath.FromSlash(c.rel))
	}
	var st unix.Stat_t
	if err := unix.Lstat(host, &st); err != nil {
		return &os.PathError{Op: "lstat", Path: host, Err: err}
	}
	hdr, err := w.header(c.rel, host, &st)
	if err != nil || hdr == nil {
		return err
	}
	if err := w.tw.WriteHeader(hdr); err != nil {
		return err
	}
	if hdr.Typeflag != tar.TypeReg || hdr.Size == 0 {
		return nil
	}
	return w.copyContent(host, hdr.Size)
}

// header describes rel; nil for what a layer cannot carry (sockets). A
// file with several links is written once: its later names are links to
// the first.
func (w *layerWriter) header(rel, host string, st *unix.Stat_t) (*tar.Header, error) {
	hdr := &tar.Header{
		Name:    rel,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: w.clamp(time.Unix(st.Mtim.Sec, 0)),
	}
	if w.ids != nil {
		hdr.Uid, hdr.Gid = w.ids(hdr.Uid, hdr.Gid)
	}
	typ := st.Mode & unix.S_IFMT
	if typ != unix.S_IFDIR && st.Nlink > 1 {
		id := inode{dev: st.Dev, ino: st.Ino}
		if first, ok := w.links[id]; ok {
			hdr.Typeflag, hdr.Linkname = tar.TypeLink, first
			w.stats.Hardlinks++
			return hdr, nil
		}
		w.links[id] = rel
	}
	if err := w.describe(hdr, host, st); err != nil || hdr.Typeflag == 0 {
		return nil, err
	}
	attrs, err := readXattrs(host)
	if err != nil {
		return nil, err
	}
	for name, v := range attrs {
		if hdr.PAXRecords == nil {
			hdr.PAXRecords = map[string]string{}
		}
		hdr.PAXRecords[xattrRecord+name] = string(v)
	}
	return hdr, nil
}

// describe fills in the type and what comes with it; a type a layer cannot
// carry leaves Typeflag 0.
func (w *layerWriter) describe(hdr *tar.Header, host string, st *unix.Stat_t) error {
	count(w.stats, st)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		hdr.Typeflag, hdr.Size = tar.TypeReg, st.Size
	case unix.S_IFDIR:
		hdr.Typeflag, hdr.Name = tar.TypeDir, hdr.Name+"/"
	case unix.S_IFLNK:
		target, err := readlinkAt(unix.AT_FDCWD, host, host)
		if err != nil {
			return err
		}
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
	case unix.S_IFCHR, unix.S_IFBLK, unix.S_IFIFO:
		hdr.Typeflag = deviceType(st.Mode)
		hdr.Devmajor, hdr.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	}
	return nil
}

// count adds an entry of the type st gives (its first name) to stats.
func count(stats *Stats, st *unix.Stat_t) {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		stats.Files++
		stats.Bytes += st.Size
	case unix.S_IFDIR:
		stats.Dirs++
	case unix.S_IFLNK:
		stats.Symlinks++
	case unix.S_IFCHR, unix.S_IFBLK, unix.S_IFIFO:
		stats.Devices++
	default:
		stats.Skipped++
	}
}

// countChanges adds to stats what writing changes from src would count,
// from an lstat of each entry: the counts of a layer written later.
func countChanges(src string, changes []change, stats *Stats) error {
	seen := map[inode]bool{}
	for _, c := range changes {
		switch c.kind {
		case kindWhiteout:
			stats.Whiteouts++
			continue
		case kindOpaque:
			stats.Opaque++
			continue
		}
		host := c.from
		if host == "" {
			host = filepath.Join(src, filepath.FromSlash(c.rel))
		}
		var st unix.Stat_t
		if err := unix.Lstat(host, &st); err != nil {
			return &os.PathError{Op: "lstat", Path: host, Err: err}
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR && st.Nlink > 1 {
			id := inode{dev: st.Dev, ino: st.Ino}
			if seen[id] {
				stats.Hardlinks++
				continue
			}
			seen[id] = true
		}
		count(stats, &st)
	}
	return nil
}

func deviceType(mode uint32) byte {
	switch mode & unix.S_IFMT {
	case unix.S_IFCHR:
		return tar.TypeChar
	case unix.S_IFBLK:
		return tar.TypeBlock
	}
	return tar.TypeFifo
}

// copyContent streams size bytes of host into the layer; a file that
// changed size since it was stat'ed is an error, not a corrupt layer.
func (w *layerWriter) copyContent(host string, size int64) error {
	f, err := os.OpenFile(host, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.CopyBuffer(w.tw, io.LimitReader(f, size), w.buf)
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("%s shrank from %d to %d bytes while read: %w", host, size, n, io.ErrUnexpectedEOF)
	}
	return nil
}

// clamp applies SourceDateEpoch.
func (w *layerWriter) clamp(t time.Time) time.Time {
	if w.epoch != nil && t.After(*w.epoch) {
		return w.epoch.Truncate(time.Second)
	}
	return t
}

// joinRel joins a relative directory and a name ("" is the root).
func joinRel(dir, name string) string {
	if dir == "" {
		return name
	}
	return path.Join(dir, name)
}

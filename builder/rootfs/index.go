package rootfs

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Index is an image's file tree as its layers' tar headers describe it,
// read without writing a file: what an instruction that only adds files
// (COPY, WORKDIR) needs to know of the stage it adds to (which folders
// exist and their metadata, where symlinks lead, the user and group files)
// at the cost of decompressing the layers once, where unpacking them costs
// creating every file. Entries are applied as ApplyLayer applies them onto
// a Root: names cleaned into the root, parent folders resolved through the
// tree's symlinks, whiteouts and order-independent opaque markers, a folder
// merging into a folder and anything else replacing what held its path.
// Folder mtimes differ on purpose: a folder keeps its entry's mtime (a
// folder only implied by its entries, theirs) where an unpacked one takes
// the time of the unpack when a later layer changes what it holds; an
// Index gives the same answer every time.
type Index struct {
	root    *indexNode
	layer   int             // the layer being read, from 1
	mtime   time.Time       // for folders an entry implies: the entry's
	keep    map[string]bool // paths whose content is kept
	entries int
}

// IndexEntry is one file of an Index.
type IndexEntry struct {
	Mode     fs.FileMode // type and permission bits, setuid, setgid, sticky
	UID, GID int
	ModTime  time.Time
	Linkname string // a symlink's target
	Size     int64
	Data     []byte // the content of a regular file named to NewIndex
}

type indexNode struct {
	IndexEntry
	children map[string]*indexNode
	touched  int // the last layer that wrote this node, or below it
}

// maxKeptSize bounds the content an Index keeps of one file.
const maxKeptSize = 4 << 20

// NewIndex reads every layer of img, base first. The content of the
// regular files at the paths in keep (as the layers name them, cleaned:
// "/etc/passwd") is kept, up to 4 MiB each.
func NewIndex(ctx context.Context, img v1.Image, keep ...string) (*Index, error) {
	x := &Index{
		root: &indexNode{IndexEntry: IndexEntry{Mode: fs.ModeDir | 0o755}, children: map[string]*indexNode{}},
		keep: map[string]bool{},
	}
	for _, k := range keep {
		x.keep[path.Clean("/"+k)] = true
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("listing layers: %w", err)
	}
	for i, l := range layers {
		if err := x.addImageLayer(ctx, l); err != nil {
			return nil, fmt.Errorf("indexing layer %d%s: %w", i, describe(l), err)
		}
	}
	return x, nil
}

func (x *Index) addImageLayer(ctx context.Context, l v1.Layer) error {
	return consume(readLayer(ctx, l), func(rc io.Reader) error { return x.AddLayer(ctx, rc) })
}

// Entries is how many tar entries the index has read.
func (x *Index) Entries() int { return x.entries }

// AddLayer reads one more uncompressed layer tar on top.
func (x *Index) AddLayer(ctx context.Context, layer io.Reader) error {
	x.layer++
	tr := tar.NewReader(layer)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil && !(errors.Is(err, tar.ErrInsecurePath) && hdr != nil) {
			return fmt.Errorf("reading layer: %w", err)
		}
		x.entries++
		if err := x.add(hdr, tr); err != nil {
			return fmt.Errorf("layer entry %q: %w", hdr.Name, err)
		}
	}
}

func (x *Index) add(hdr *tar.Header, body io.Reader) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	rel := strings.TrimPrefix(path.Clean("/"+hdr.Name), "/")
	if rel == "" {
		return nil // the root itself, as ApplyLayer
	}
	dir, base := path.Split(rel)
	if isWhiteout(rel) {
		return x.whiteout(dir, base, rel)
	}
	x.mtime = hdr.ModTime
	parentPath, parent, err := x.walk(dir, true, true)
	if err != nil {
		return err
	}
	if parent == nil || !parent.Mode.IsDir() {
		return fmt.Errorf("%w: /%s is not a folder", syscall.ENOTDIR, dir)
	}
	n := &indexNode{touched: x.layer}
	switch hdr.Typeflag {
	case tar.TypeLink:
		target := strings.TrimPrefix(path.Clean("/"+hdr.Linkname), "/")
		tdir, tbase := path.Split(target)
		_, td, err := x.walk(tdir, true, false)
		if err != nil || td == nil || td.children[tbase] == nil || target == "" {
			return fmt.Errorf("hardlink target %s: %w", hdr.Linkname, fs.ErrNotExist)
		}
		// One inode: the link's header gives both names its metadata.
		t := td.children[tbase]
		t.Mode = t.Mode.Type() | hdr.FileInfo().Mode().Perm() | hdr.FileInfo().Mode()&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)
		t.UID, t.GID, t.ModTime = hdr.Uid, hdr.Gid, hdr.ModTime
		n.IndexEntry = t.IndexEntry
	case tar.TypeDir, tar.TypeReg, '\x00', tar.TypeGNUSparse, tar.TypeSymlink, tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		fi := hdr.FileInfo()
		n.IndexEntry = IndexEntry{Mode: fi.Mode(), UID: hdr.Uid, GID: hdr.Gid, ModTime: hdr.ModTime, Linkname: hdr.Linkname, Size: hdr.Size}
		if hdr.Typeflag != tar.TypeSymlink {
			n.Linkname = ""
		}
	default:
		return fmt.Errorf("%w: entry type %q is not supported", ErrInvalidLayer, hdr.Typeflag)
	}
	full := path.Join(parentPath, base)
	if n.Mode.IsRegular() && x.keep[full] && n.Size <= maxKeptSize && hdr.Typeflag != tar.TypeLink {
		data, err := io.ReadAll(io.LimitReader(body, maxKeptSize))
		if err != nil {
			return err
		}
		n.Data = data
	}
	if old := parent.children[base]; old != nil && old.Mode.IsDir() && n.Mode.IsDir() {
		n.children = old.children // folders merge
	}
	if n.Mode.IsDir() && n.children == nil {
		n.children = map[string]*indexNode{}
	}
	parent.children[base] = n
	x.touch(parentPath)
	return nil
}

// whiteout removes base from dir, or, for an opaque marker, everything in
// dir this layer did not write.
func (x *Index) whiteout(dir, base, rel string) error {
	if base != opaqueMarker && (strings.HasPrefix(rel, whiteoutMeta) || strings.HasPrefix(base, whiteoutMeta)) {
		return nil // AUFS metadata
	}
	_, d, err := x.walk(dir, true, false)
	if err != nil || d == nil || !d.Mode.IsDir() {
		return nil // nothing there to hide
	}
	if base == opaqueMarker {
		x.clearOpaque(d)
		return nil
	}
	name := strings.TrimPrefix(base, whiteoutPrefix)
	if name == "" || name == "." || name == ".." {
		return fmt.Errorf("%w: whiteout %q names no file", ErrInvalidLayer, base)
	}
	delete(d.children, name)
	return nil
}

// clearOpaque removes from d, and from the folders below it, everything
// this layer did not write, before or after the marker.
func (x *Index) clearOpaque(d *indexNode) {
	for name, c := range d.children {
		switch {
		case c.touched < x.layer:
			delete(d.children, name)
		case c.Mode.IsDir():
			x.clearOpaque(c)
		}
	}
}

// touch marks the folders down to p (resolved) as written by this layer.
func (x *Index) touch(p string) {
	n := x.root
	n.touched = x.layer
	for _, part := range strings.Split(strings.Trim(p, "/"), "/") {
		if part == "" {
			continue
		}
		if n = n.children[part]; n == nil {
			return
		}
		n.touched = x.layer
	}
}

// Resolve maps a path as the container sees it to the same path with the
// tree's symlinks followed, as Root.Resolve does: absolute targets restart
// at the root, ".." never leaves it, the last component's symlink is
// followed only with followLast (or a trailing slash), components that do
// not exist are kept as written.
func (x *Index) Resolve(p string, followLast bool) (string, error) {
	if strings.HasSuffix(p, "/") {
		followLast = true
	}
	resolved, _, err := x.walk(p, followLast, false)
	return resolved, err
}

// Lstat describes the entry at p, a path Resolve returned (no symlink
// followed).
func (x *Index) Lstat(p string) (IndexEntry, bool) {
	n := x.lookup(p)
	if n == nil {
		return IndexEntry{}, false
	}
	return n.IndexEntry, true
}

// lookup finds the node at the clean, resolved path p.
func (x *Index) lookup(p string) *indexNode {
	n := x.root
	for _, part := range strings.Split(strings.Trim(path.Clean("/"+p), "/"), "/") {
		if part == "" {
			continue
		}
		if !n.Mode.IsDir() {
			return nil
		}
		if n = n.children[part]; n == nil {
			return nil
		}
	}
	return n
}

// walk resolves p; with create, missing folders are made (0755, root's),
// as ApplyLayer makes an entry's missing parents. It returns the resolved
// path and its node (nil when it does not exist).
func (x *Index) walk(p string, followLast, create bool) (string, *indexNode, error) {
	parts := strings.Split(p, "/")
	var cur []string
	n := x.root
	links := 0
	for len(parts) > 0 {
		part := parts[0]
		parts = parts[1:]
		switch part {
		case "", ".":
			continue
		case "..":
			if n != nil && !n.Mode.IsDir() {
				return "", nil, fmt.Errorf("resolving %s: %w", p, syscall.ENOTDIR)
			}
			if len(cur) > 0 {
				cur = cur[:len(cur)-1]
			}
			n = x.lookup(strings.Join(cur, "/"))
			continue
		}
		if n == nil {
			cur = append(cur, part) // below a missing component: kept as written
			continue
		}
		if !n.Mode.IsDir() {
			return "", nil, fmt.Errorf("resolving %s: %w", p, syscall.ENOTDIR)
		}
		child := n.children[part]
		last := !slicesHasName(parts)
		if child != nil && child.Mode&fs.ModeSymlink != 0 && (!last || followLast) {
			if links++; links > 255 {
				return "", nil, fmt.Errorf("resolving %s: %w", p, syscall.ELOOP)
			}
			if strings.HasPrefix(child.Linkname, "/") {
				cur, n = nil, x.root
			}
			parts = append(strings.Split(child.Linkname, "/"), parts...)
			continue
		}
		if child == nil && create {
			child = &indexNode{IndexEntry: IndexEntry{Mode: fs.ModeDir | 0o755, ModTime: x.mtime}, children: map[string]*indexNode{}, touched: x.layer}
			n.children[part] = child
		}
		cur = append(cur, part)
		n = child
	}
	return "/" + strings.Join(cur, "/"), n, nil
}

// slicesHasName says whether parts still holds a component ("." and ".."
// too: "link/." goes through link).
func slicesHasName(parts []string) bool {
	for _, p := range parts {
		if p != "" {
			return true
		}
	}
	return false
}

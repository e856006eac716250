package snapshot

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// A lower file with several links, written under one name in a step:
// overlayfs with index=on copies it up once, into its index (work/index,
// an entry named by the lower file's handle) and links the written name to
// it; every other name then shows the copy in the merged tree. The upper
// directory still holds only the names the step touched, while Walk sees
// the one inode change under every name and writes them all, still linked
// (as buildah and kaniko do). So an Overlay writes the other names the
// lower tree gives such a file, as links to the copy. Without the index
// (a kernel or filesystem that refuses it) a copy-up cannot be told from a
// file made anew under the same name, and the names are left apart, as the
// kernel left them.

// fileHandle is a file's handle as name_to_handle_at gives it and
// overlayfs records it (struct ovl_fb's type and fid).
type fileHandle struct {
	typ int32
	fid string
}

// linkSet is one indexed lower file: its copied-up names and the names the
// lower tree gives it.
type linkSet struct {
	copied []string // upper names of the copy
	names  []string // lower names
	nlink  uint64   // the lower file's link count, once found
}

// copiedLinks are the indexed copy-ups found in the upper directory, by the
// lower file's handle.
type copiedLinks struct {
	index map[inode]fileHandle // upper inode → lower handle, from work/index
	sets  map[fileHandle]*linkSet
}

// readIndex reads overlayfs's index in the work directory: each entry is
// a link of the upper copy of a lower hardlink, named by the hex of the
// lower file's handle (ovl_fb: version, magic 0xfb, length, flags, type,
// 16 bytes of uuid, fid). No index directory (index=off): no entries.
func (o *Overlay) readIndex() (copiedLinks, error) {
	c := copiedLinks{index: map[inode]fileHandle{}, sets: map[fileHandle]*linkSet{}}
	dir := filepath.Join(o.work(), "index")
	f, names, err := openDir(unix.AT_FDCWD, dir, dir)
	if errors.Is(err, unix.ENOENT) {
		return c, nil
	}
	if err != nil {
		return c, err
	}
	defer f.Close()
	for _, n := range names {
		fb, err := hex.DecodeString(n)
		if err != nil || len(fb) < 21 || fb[1] != 0xfb || int(fb[2]) != len(fb) {
			continue // a whiteout or temporary entry of the index
		}
		st, err := lstatAt(int(f.Fd()), n, filepath.Join(dir, n))
		if err != nil {
			return c, err
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR && st.Nlink > 1 {
			c.index[inode{dev: st.Dev, ino: st.Ino}] = fileHandle{typ: int32(fb[4]), fid: string(fb[21:])}
		}
	}
	return c, nil
}

// note records the upper non-directory rel (stat st) if it is the copy of
// an indexed lower file.
func (c copiedLinks) note(st *unix.Stat_t, rel string) {
	if st.Nlink < 2 || len(c.index) == 0 {
		return
	}
	h, ok := c.index[inode{dev: st.Dev, ino: st.Ino}]
	if !ok {
		return
	}
	if c.sets[h] == nil {
		c.sets[h] = &linkSet{}
	}
	c.sets[h].copied = append(c.sets[h].copied, rel)
}

// keepLinks adds to set, for every indexed copy-up of links, the other
// names its lower file has that the step left visible (not deleted,
// replaced or hidden below an opaque folder), read from the copy and
// linked to it. added tells whether a name was added.
func (o *Overlay) keepLinks(ctx context.Context, set *changeSet, links copiedLinks) (added bool, err error) {
	if len(links.sets) == 0 {
		return false, nil
	}
	if err := o.findLowerNames(ctx, links.sets); err != nil {
		return false, fmt.Errorf("finding the other names of copied-up files in %s: %w", o.root, err)
	}
	for _, ls := range links.sets {
		slices.Sort(ls.copied)
		src := o.hostUpper(ls.copied[0])
		for _, n := range ls.names {
			if slices.Contains(ls.copied, n) {
				continue
			}
			visible, err := o.lowerVisible(n)
			if err != nil {
				return false, err
			}
			if visible {
				set.add(change{rel: n, name: n, kind: kindEntry, from: src})
				added = true
			}
		}
	}
	return added, nil
}

// parentsFromLower makes the entries of set the upper directory lacks (the
// folders above a name keepLinks added) read from the lower tree, which
// holds them unchanged.
func (o *Overlay) parentsFromLower(set *changeSet) {
	for name, c := range set.byName {
		if c.kind != kindEntry || c.from != "" {
			continue
		}
		if _, err := os.Lstat(o.hostUpper(c.rel)); errors.Is(err, os.ErrNotExist) {
			c.from = filepath.Join(o.root, filepath.FromSlash(c.rel))
			set.byName[name] = c
		}
	}
}

// errAllFound stops the lower walk early.
var errAllFound = errors.New("every name found")

// findLowerNames walks the lower tree (root, not written before the layer
// is applied) for the names of the files of sets, by handle, on the root's
// device, less what is excluded; it stops once every file has as many
// names as links.
func (o *Overlay) findLowerNames(ctx context.Context, sets map[fileHandle]*linkSet) error {
	var st unix.Stat_t
	if err := unix.Stat(o.root, &st); err != nil {
		return &os.PathError{Op: "stat", Path: o.root, Err: err}
	}
	rootDev := st.Dev
	var mu sync.Mutex
	complete := func() bool {
		for _, ls := range sets {
			if ls.nlink == 0 || uint64(len(ls.names)) < ls.nlink {
				return false
			}
		}
		return true
	}
	visit := func(f *os.File, names []string, t dirTask[struct{}]) ([]dirTask[struct{}], error) {
		var subs []dirTask[struct{}]
		for _, n := range names {
			child := joinRel(t.rel, n)
			if o.exclude.excluded(child) {
				continue
			}
			host := filepath.Join(o.root, filepath.FromSlash(child))
			st, err := lstatAt(int(f.Fd()), n, host)
			if err != nil {
				return nil, err
			}
			if st.Mode&unix.S_IFMT == unix.S_IFDIR {
				if st.Dev == rootDev {
					subs = append(subs, dirTask[struct{}]{rel: child})
				}
				continue
			}
			if st.Nlink < 2 {
				continue
			}
			h, _, err := unix.NameToHandleAt(int(f.Fd()), n, 0)
			if err != nil {
				return nil, &os.PathError{Op: "name_to_handle_at", Path: host, Err: err}
			}
			mu.Lock()
			ls := sets[fileHandle{typ: h.Type(), fid: string(h.Bytes())}]
			if inner, ok := innerHandle(h.Bytes()); ok && ls == nil {
				ls = sets[inner]
			}
			if ls != nil {
				ls.names = append(ls.names, child)
				ls.nlink = uint64(st.Nlink)
			}
			done := ls != nil && complete()
			mu.Unlock()
			if done {
				return nil, errAllFound
			}
		}
		return subs, nil
	}
	err := walkDirs(ctx, o.root, dirTask[struct{}]{}, visit)
	if errors.Is(err, errAllFound) {
		err = nil
	}
	return err
}

// innerHandle is the handle of the real file an overlay's file handle
// (struct ovl_fh: 3 bytes of padding, then an ovl_fb) stands for. The
// index of an overlay mounted on the folders of a stage (Options.Lowers)
// names lower files by their real handles, while root, the stage's own
// overlay, gives its files overlay handles wrapping those.
func innerHandle(b []byte) (fileHandle, bool) {
	if len(b) < 3+21 || b[3+1] != 0xfb || int(b[3+2]) > len(b)-3 || int(b[3+2]) < 21 {
		return fileHandle{}, false
	}
	fb := b[3 : 3+int(b[3+2])]
	return fileHandle{typ: int32(fb[4]), fid: string(fb[21:])}, true
}

// lowerVisible tells whether the merged tree showed rel from the lower
// tree at the end of the step: no upper entry at rel, and no whiteout,
// non-directory or opaque directory on the way to it.
func (o *Overlay) lowerVisible(rel string) (bool, error) {
	parts := strings.Split(rel, "/")
	for i := range parts {
		host := o.hostUpper(strings.Join(parts[:i+1], "/"))
		var st unix.Stat_t
		err := unix.Lstat(host, &st)
		if errors.Is(err, unix.ENOENT) {
			return true, nil
		}
		if err != nil {
			return false, &os.PathError{Op: "lstat", Path: host, Err: err}
		}
		if i == len(parts)-1 || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return false, nil
		}
		opaque, err := overlayXattrValue(host, "opaque")
		if err != nil {
			return false, err
		}
		if opaque == "y" {
			return false, nil
		}
	}
	return false, nil
}

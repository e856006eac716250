package snapshot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Overlayfs without index=on copies up only the name a step writes of a
// lower file with several links: the new inode holds the change, the other
// names keep the lower file and its old content. Walk sees the one inode
// change under every name and writes them all, still linked (as buildah and
// kaniko do). So that both strategies give the same layer, an Overlay
// writes every other name the lower tree gives such a file, as a link to
// the copied-up one: the lower tree knows the link set.

// copiedLinks are the copied-up files whose lower file had other names: the
// names copied up, by lower inode.
type copiedLinks map[inode]*linkSet

// linkSet is one lower inode with several names.
type linkSet struct {
	nlink  uint64   // the lower file's link count: names to find
	copied []string // names the step copied up
	names  []string // names found in the lower tree
}

// note records the upper entry rel (name in the upper directory whose
// lower directory is lowerFD, -1 for none) if it is the copy-up of a lower
// file with several links.
func (c copiedLinks) note(lowerFD int, name, rel string) error {
	if lowerFD < 0 {
		return nil
	}
	var st unix.Stat_t
	err := unix.Fstatat(lowerFD, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return nil // a new name
	}
	if err != nil {
		return &os.PathError{Op: "lstat", Path: "lower /" + rel, Err: err}
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR || st.Nlink < 2 {
		return nil
	}
	id := inode{dev: st.Dev, ino: st.Ino}
	if c[id] == nil {
		c[id] = &linkSet{nlink: uint64(st.Nlink)}
	}
	c[id].copied = append(c[id].copied, rel)
	return nil
}

// keepLinks adds to set, for every copied-up file of links, the other
// names its lower file has that the step left visible (not deleted,
// replaced or hidden below an opaque folder), read from the copied-up file
// and linked to it. A lower file whose names the step copied up one by one
// keeps them apart: they were separate files in the step already. added
// tells whether a name was added.
func (o *Overlay) keepLinks(ctx context.Context, set *changeSet, links copiedLinks) (added bool, err error) {
	if len(links) == 0 {
		return false, nil
	}
	if err := o.findLowerNames(ctx, links); err != nil {
		return false, fmt.Errorf("finding the other names of copied-up files in %s: %w", o.root, err)
	}
	for _, ls := range links {
		slices.Sort(ls.copied)
		src := ls.copied[0]
		set.add(change{rel: src, name: src, kind: kindEntry, linked: true})
		for _, n := range ls.names {
			if slices.Contains(ls.copied, n) {
				continue
			}
			visible, err := o.lowerVisible(n)
			if err != nil {
				return false, err
			}
			if visible {
				set.add(change{rel: n, name: n, kind: kindEntry, from: o.hostUpper(src), linked: true})
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
// is applied) for the names of the inodes of links, on the root's device,
// less what is excluded; it stops once every link count is accounted for.
func (o *Overlay) findLowerNames(ctx context.Context, links copiedLinks) error {
	var st unix.Stat_t
	if err := unix.Stat(o.root, &st); err != nil {
		return &os.PathError{Op: "stat", Path: o.root, Err: err}
	}
	rootDev := st.Dev
	var mu sync.Mutex
	left := uint64(0)
	for _, ls := range links {
		left += ls.nlink
	}
	visit := func(f *os.File, names []string, t dirTask[struct{}]) ([]dirTask[struct{}], error) {
		var subs []dirTask[struct{}]
		for _, n := range names {
			child := joinRel(t.rel, n)
			if o.exclude.excluded(child) {
				continue
			}
			st, err := lstatAt(int(f.Fd()), n, filepath.Join(o.root, filepath.FromSlash(child)))
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
			mu.Lock()
			ls := links[inode{dev: st.Dev, ino: st.Ino}]
			if ls != nil {
				ls.names = append(ls.names, child)
				left--
			}
			done := left == 0
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
	for _, ls := range links {
		slices.SortFunc(ls.names, comparePaths)
	}
	return err
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

package snapshot

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"kiln/builder/rootfs"
)

// Walk takes a snapshot by comparing the tree with a stat record of it
// taken before the step. It works on any filesystem and costs a walk of the
// whole tree twice. A Walk is used by one goroutine at a time.
type Walk struct {
	root    string
	opts    Options
	exclude excluder
	before  map[string]*record // by path relative to the root; "" is the root
	rootDev uint64             // directories on other devices are mount points
}

// record is what Before knows of one path.
type record struct {
	mode, uid, gid uint32
	size           int64
	mtime, ctime   unix.Timespec
	ino, dev       uint64
	nlink, rdev    uint64
	link           string // symlink target
	xattrs         uint64 // xattrHash, when hashed
	hashed         bool   // the ctime was recent: xattrs were read
	children       []string
}

// NewWalk returns a Walk of the tree at root.
func NewWalk(root string, opts Options) *Walk {
	return &Walk{root: root, opts: opts, exclude: newExcluder(opts.Exclude)}
}

// Before records the whole tree as it is before the step.
func (w *Walk) Before(ctx context.Context) error {
	since := time.Now()
	var st unix.Stat_t
	if err := unix.Stat(w.root, &st); err != nil {
		return fmt.Errorf("recording %s before the step: %w", w.root, &os.PathError{Op: "stat", Path: w.root, Err: err})
	}
	w.rootDev = st.Dev
	before := map[string]*record{"": {}}
	var mu sync.Mutex
	visit := func(f *os.File, names []string, t dirTask[*record]) ([]dirTask[*record], error) {
		recs := make(map[string]*record, len(names))
		var subs []dirTask[*record]
		for _, n := range names {
			child := joinRel(t.rel, n)
			if w.exclude.excluded(child) {
				continue
			}
			r, err := w.record(int(f.Fd()), n, child)
			if err == nil && (recent(r.ctime, since) || r.mode&unix.S_IFMT == unix.S_IFDIR) {
				// Directories always: their ctime does not count (see changed).
				err = w.hashXattrs(r, child)
			}
			if err != nil {
				return nil, err
			}
			if w.mountPoint(r) {
				continue
			}
			recs[child] = r
			t.arg.children = append(t.arg.children, n)
			if r.mode&unix.S_IFMT == unix.S_IFDIR {
				subs = append(subs, dirTask[*record]{rel: child, arg: r})
			}
		}
		mu.Lock()
		maps.Copy(before, recs)
		mu.Unlock()
		return subs, nil
	}
	if err := walkDirs(ctx, w.root, dirTask[*record]{arg: before[""]}, visit); err != nil {
		return fmt.Errorf("recording %s before the step: %w", w.root, err)
	}
	w.before = before
	return nil
}

// record stats name (in dirFD) at rel; its xattrs are hashed on demand.
func (w *Walk) record(dirFD int, name, rel string) (*record, error) {
	host := w.host(rel)
	st, err := lstatAt(dirFD, name, host)
	if err != nil {
		return nil, err
	}
	r := &record{
		mode: st.Mode, uid: st.Uid, gid: st.Gid, size: st.Size,
		mtime: st.Mtim, ctime: st.Ctim, ino: st.Ino, dev: st.Dev,
		nlink: uint64(st.Nlink), rdev: st.Rdev,
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		if r.link, err = readlinkAt(dirFD, name, host); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// hashXattrs adds the entry's xattrs to its record.
func (w *Walk) hashXattrs(r *record, rel string) error {
	h, err := xattrHash(w.host(rel))
	if err != nil {
		return err
	}
	r.xattrs, r.hashed = h, true
	return nil
}

// recentWindow is how long before Before an entry's ctime counts as
// recent. Setting an xattr changes only the ctime, and a ctime from the
// kernel's coarse clock (or a filesystem with whole seconds) may not move
// for a change made in the same tick. An entry changed longer ago than
// that gets a later ctime for any change after Before, so only recent
// entries need their xattrs read: in a tree unpacked a second before the
// step, none.
const recentWindow = time.Second

// recent tells whether a ctime is within recentWindow of since (Before's
// start).
func recent(ctime unix.Timespec, since time.Time) bool {
	return !time.Unix(ctime.Unix()).Before(since.Add(-recentWindow))
}

// mountPoint tells a directory another filesystem is mounted on (a cache
// or secret mount the caller did not exclude): like an excluded path it is
// neither written, whiteouted nor descended into. Only directories: a
// bind-mounted file, or a file of an overlayfs root whose layers span
// filesystems, may report another device and is compared as any other.
func (w *Walk) mountPoint(r *record) bool {
	return r.mode&unix.S_IFMT == unix.S_IFDIR && r.dev != w.rootDev
}

func (w *Walk) host(rel string) string { return filepath.Join(w.root, filepath.FromSlash(rel)) }

// Diff walks the tree again and writes the layer of what changed since
// Before to out. Before's record is kept: Diff may be called again.
func (w *Walk) Diff(ctx context.Context, out io.Writer) (*Stats, error) {
	if w.before == nil {
		return nil, ErrNoBefore
	}
	d := &walkDiff{w: w, set: newChangeSet(), stats: &Stats{}}
	first := dirTask[diffDir]{arg: diffDir{old: w.before[""]}}
	if err := walkDirs(ctx, w.root, first, d.visit); err != nil {
		return nil, fmt.Errorf("comparing %s with before the step: %w", w.root, err)
	}
	d.set.withParents()
	if err := newLayerWriter(w.root, w.opts, out, d.stats).write(ctx, d.set.sorted()); err != nil {
		return nil, err
	}
	return d.stats, nil
}

// walkDiff is one Diff's walk; its directories are visited concurrently.
type walkDiff struct {
	w     *Walk
	mu    sync.Mutex // guards set and stats
	set   *changeSet
	stats *Stats
}

// diffDir is what a directory's visit knows: old is its record from Before
// (nil when it was no directory), all that everything below is new.
type diffDir struct {
	old *record
	all bool
}

// visit compares one directory's entries with their records, then records
// the changes found.
func (d *walkDiff) visit(f *os.File, names []string, t dirTask[diffDir]) ([]dirTask[diffDir], error) {
	local := newChangeSet()
	var subs []dirTask[diffDir]
	seen := make(map[string]bool, len(names))
	mounts := false
	for _, n := range names {
		child := joinRel(t.rel, n)
		if d.w.exclude.excluded(child) {
			continue
		}
		seen[n] = true
		sub, mount, err := d.child(int(f.Fd()), n, child, t.arg.all, local)
		if err != nil {
			return nil, err
		}
		mounts = mounts || mount
		if sub != nil {
			subs = append(subs, *sub)
		}
	}
	if t.arg.old != nil && !t.arg.all {
		d.deletions(t.rel, t.arg.old.children, seen, mounts, local)
	}
	d.mu.Lock()
	maps.Copy(d.set.byName, local.byName)
	d.stats.Scanned += len(seen)
	d.mu.Unlock()
	return subs, nil
}

// deletions records what Before saw in the directory rel and is gone: a
// whiteout each, or, when every name it held is gone (emptied, or removed
// and made again with new names), one opaque marker. Not when something
// excluded or mounted lives below, which an opaque marker would hide.
func (d *walkDiff) deletions(rel string, old []string, seen map[string]bool, mounts bool, set *changeSet) {
	var gone []string
	for _, n := range old {
		if !seen[n] {
			gone = append(gone, n)
		}
	}
	if !mounts && opaqueInstead(rel, len(old), len(gone), d.w.exclude) {
		set.opaque(rel)
		return
	}
	for _, n := range gone {
		set.whiteout(joinRel(rel, n))
	}
}

// child compares one entry with its record; a directory is returned to be
// visited, and mount tells a mount point left out.
func (d *walkDiff) child(dirFD int, name, rel string, all bool, set *changeSet) (sub *dirTask[diffDir], mount bool, err error) {
	if rootfs.ReservedName(name) {
		return nil, false, fmt.Errorf("/%s: %w", rel, ErrReservedName)
	}
	cur, err := d.w.record(dirFD, name, rel)
	if err != nil {
		return nil, false, err
	}
	if d.w.mountPoint(cur) {
		return nil, true, nil
	}
	old := d.w.before[rel]
	if all {
		old = nil
	}
	if old != nil && old.hashed && !changed(old, cur) {
		if err := d.w.hashXattrs(cur, rel); err != nil {
			return nil, false, err
		}
	}
	if changed(old, cur) {
		set.entry(rel)
	}
	if cur.mode&unix.S_IFMT != unix.S_IFDIR {
		return nil, false, nil
	}
	// A directory removed and made again is compared name by name, by what
	// it holds and not by its inode: whether it got its old inode back is up
	// to the filesystem, and the layer must not depend on it.
	if old == nil || old.mode&unix.S_IFMT != unix.S_IFDIR {
		return &dirTask[diffDir]{rel: rel, arg: diffDir{all: true}}, false, nil
	}
	return &dirTask[diffDir]{rel: rel, arg: diffDir{old: old}}, false, nil
}

// changed tells whether cur differs from old in anything a layer carries
// or that betrays a change of content.
//
// A directory is unchanged while the metadata a layer carries for it (mode,
// owner, xattrs) is: its size, link count, times and inode move with what
// it holds, and what it holds is compared entry by entry. A directory that
// gets a changed child is written anyway, as the child's parent. This is
// BuildKit's rule (util/overlay sameDirent), and it keeps out of the layer
// the folders a step only created and removed mount points in.
func changed(old, cur *record) bool {
	if old == nil {
		return true
	}
	if old.mode&unix.S_IFMT == unix.S_IFDIR && cur.mode&unix.S_IFMT == unix.S_IFDIR {
		return old.mode != cur.mode || old.uid != cur.uid || old.gid != cur.gid ||
			old.hashed && cur.hashed && old.xattrs != cur.xattrs
	}
	return old.mode != cur.mode || old.uid != cur.uid || old.gid != cur.gid ||
		old.size != cur.size || old.mtime != cur.mtime || old.ctime != cur.ctime ||
		old.ino != cur.ino || old.dev != cur.dev || old.nlink != cur.nlink ||
		old.rdev != cur.rdev || old.link != cur.link ||
		old.hashed && cur.hashed && old.xattrs != cur.xattrs
}

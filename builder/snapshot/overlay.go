package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"kiln/builder/rootfs"

	"golang.org/x/sys/unix"
)

// Overlay takes a snapshot by running the step on an overlay mount of the
// root: the upper directory then holds exactly the change, and a snapshot
// costs what changed. Mounting needs CAP_SYS_ADMIN in the current mount
// namespace. An Overlay is used by one goroutine at a time.
type Overlay struct {
	root    string
	scratch string
	opts    Options
	exclude excluder
	mounted bool
}

// NewOverlay returns an Overlay of the tree at root that keeps its upper,
// work and merged directories in scratch, which must be on a filesystem
// overlayfs accepts as upper (not overlayfs itself) and must not be inside
// root. Neither path may hold ',' or ':', which the mount options cannot
// carry on every kernel.
func NewOverlay(root, scratch string, opts Options) (*Overlay, error) {
	absRoot, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("overlay of %s: %w", root, err)
	}
	absScratch, err := filepath.Abs(scratch)
	if err != nil {
		return nil, fmt.Errorf("overlay scratch %s: %w", scratch, err)
	}
	for _, p := range append([]string{absRoot, absScratch}, opts.Lowers...) {
		if strings.ContainsAny(p, ",:") {
			return nil, fmt.Errorf("overlay path %q holds ',' or ':': %w", p, ErrOverlayUnsupported)
		}
	}
	if absScratch == absRoot || strings.HasPrefix(absScratch, strings.TrimSuffix(absRoot, "/")+"/") {
		return nil, fmt.Errorf("overlay scratch %s is inside its root %s: %w", absScratch, absRoot, ErrScratchInRoot)
	}
	fi, err := os.Stat(absRoot)
	if err != nil {
		return nil, fmt.Errorf("overlay of %s: %w", root, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("overlay of %s: %w", root, unix.ENOTDIR)
	}
	return &Overlay{root: absRoot, scratch: absScratch, opts: opts, exclude: newExcluder(opts.Exclude)}, nil
}

func (o *Overlay) upper() string  { return filepath.Join(o.scratch, "upper") }
func (o *Overlay) work() string   { return filepath.Join(o.scratch, "work") }
func (o *Overlay) merged() string { return filepath.Join(o.scratch, "merged") }

// Mount mounts the overlay (lower: root, or Options.Lowers) and returns
// the merged directory the step must run in. Until Detach (or Diff), root
// must not be written. A refused mount returns an error matching
// ErrOverlayUnsupported.
func (o *Overlay) Mount(ctx context.Context) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if o.mounted {
		return o.merged(), nil
	}
	if err := o.clean(); err != nil { // what a failed Diff left is not this step's
		return "", err
	}
	for _, d := range []string{o.upper(), o.work(), o.merged()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", fmt.Errorf("preparing overlay scratch: %w", err)
		}
	}
	lower, opts := o.root, mountOptions()
	if len(o.opts.Lowers) > 0 {
		lower = strings.Join(o.opts.Lowers, ":")
		opts = withUserXattr(opts, o.opts.UserXattr)
	}
	if err := mountOverlay(lower, o.upper(), o.work(), o.merged(), opts); err != nil {
		return "", err
	}
	o.mounted = true
	return o.merged(), nil
}

// mountOptions are tried in order: the first keeps the upper a plain tree
// (no metadata-only copy-up, no redirected directories) and indexes the
// copy-ups of lower hardlinks (index=on: every name of such a file shows
// the step's change, and Diff can tell a copy-up from a file made anew,
// see links.go); kernels that do not know those options, or a user
// namespace that needs userxattr, get the next.
//
// volatile (Linux 5.10) goes first: overlayfs then skips the fsync of every
// copied-up file, which on ext4 forces out everything written before (a
// freshly unpacked base: from half a second to many seconds of I/O wait).
// The upper directory only lives until Diff and is thrown away if kiln
// dies, so there is nothing a crash could lose.
func mountOptions() []string {
	plain := ",metacopy=off,redirect_dir=off"
	var opts []string
	for _, volatile := range []string{",volatile", ""} {
		for _, index := range []string{",index=on", ",index=off"} {
			opts = append(opts, plain+index+volatile, plain+index+",userxattr"+volatile)
		}
		opts = append(opts, ",userxattr"+volatile, volatile)
	}
	return opts
}

// withUserXattr keeps the option sets that say userxattr, or those that
// do not: folders made by another overlay must be read with the xattrs it
// wrote.
func withUserXattr(opts []string, user bool) []string {
	var out []string
	for _, o := range opts {
		if strings.Contains(o, ",userxattr") == user {
			out = append(out, o)
		}
	}
	return out
}

// mountOverlay mounts lower+upper on merged, with the first of the option
// sets opts the kernel takes.
func mountOverlay(lower, upper, work, merged string, opts []string) error {
	base := "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work
	var err error
	for _, extra := range opts {
		err = unix.Mount("overlay", merged, "overlay", unix.MS_NODEV, base+extra)
		if err == nil {
			return nil
		}
		if !unsupported(err) {
			return fmt.Errorf("mounting overlay of %s on %s: %w", lower, merged, err)
		}
	}
	return fmt.Errorf("mounting overlay of %s on %s: %w (%w)", lower, merged, ErrOverlayUnsupported, err)
}

// unsupported tells mount errors that mean "not here" rather than "broken".
func unsupported(err error) bool {
	return errors.Is(err, unix.EPERM) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENODEV)
}

// Diff unmounts the overlay, writes the layer of the upper directory to out,
// applies the same layer to root so that root holds the step's result, and
// empties scratch. On error root may hold part of the step.
func (o *Overlay) Diff(ctx context.Context, out io.Writer) (*Stats, error) {
	c, err := o.Detach(ctx)
	if err != nil {
		return nil, err
	}
	return c.Apply(ctx, out)
}

// Change is what a step changed, as the upper directory of its overlay
// holds it once Detach has read it. It is either applied to root and
// written as a layer at once (Apply, which is Diff), or kept: the caller
// moves the upper directory's entries into a folder of its own (Keep),
// which is then the step's result as a folder, laid over root by a caller
// stacking layer folders in an overlay mount instead of applying it, and
// whose layer it writes later (Write), while the next steps run.
type Change struct {
	o       *Overlay
	changes []change
	stats   *Stats
	// added: other names of copied-up hardlinks, which the layer holds but
	// the upper directory does not (see links.go): only Apply gives them.
	added bool
	src   string // where a kept change is read from (Keep); "" until kept
}

// Detach unmounts the overlay and reads the step's change from its upper
// directory.
func (o *Overlay) Detach(ctx context.Context) (*Change, error) {
	if !o.mounted {
		return nil, ErrNotMounted
	}
	if err := o.unmount(); err != nil {
		return nil, err
	}
	stats := &Stats{}
	set := newChangeSet()
	links, err := o.scan(ctx, set, stats)
	if err != nil {
		return nil, fmt.Errorf("reading overlay upper %s: %w", o.upper(), err)
	}
	added, err := o.keepLinks(ctx, set, links)
	if err != nil {
		return nil, err
	}
	set.withParents()
	if added {
		o.parentsFromLower(set)
	}
	return &Change{o: o, changes: set.sorted(), stats: stats, added: added}, nil
}

// Apply writes the layer to out and applies it to root, then empties the
// scratch directory.
func (c *Change) Apply(ctx context.Context, out io.Writer) (*Stats, error) {
	if c.src != "" {
		return nil, errors.New("internal error: a kept change applied")
	}
	if err := c.o.writeAndApply(ctx, c.changes, out, c.stats); err != nil {
		return nil, err
	}
	if err := c.o.clean(); err != nil {
		return nil, err
	}
	return c.stats, nil
}

// Empty tells a step that changed nothing (no entry to write).
func (c *Change) Empty() bool { return len(c.changes) == 0 }

// Stackable tells whether the upper directory alone, laid over root, shows
// what the step left: not when the layer must add other names of a
// hardlinked file the step wrote, which only Apply makes.
func (c *Change) Stackable() bool { return !c.added }

// Keep takes the change as the caller moved it: the upper directory's
// entries are in dir, a folder of its own, which nothing may write to; the
// change is read from there (Write), and the Overlay is closed as usual.
// It returns the layer's counts as Write will find them, and the scan's
// warnings.
func (c *Change) Keep(dir string) (*Stats, error) {
	if !c.Stackable() {
		return nil, errors.New("internal error: a change with hardlinks only the layer holds was kept")
	}
	c.src = dir
	if err := countChanges(dir, c.changes, c.stats); err != nil {
		return nil, err
	}
	return c.stats, nil
}

// Dir is the upper directory: the step's change as a folder.
func (c *Change) Dir() string { return c.o.upper() }

// Write writes the layer of a kept change to out, reading the upper
// directory, which must not change until it returns; its counts are
// Keep's.
func (c *Change) Write(ctx context.Context, out io.Writer) error {
	if c.src == "" {
		return errors.New("internal error: a change written but not kept")
	}
	return newLayerWriter(c.src, c.o.opts, out, &Stats{}).write(ctx, c.changes)
}

// Close unmounts the overlay if it is still mounted and empties scratch,
// for a step that failed: root is left as it was before Mount.
func (o *Overlay) Close() error {
	if o.mounted {
		if err := o.unmount(); err != nil {
			return err
		}
	}
	return o.clean()
}

// unmount unmounts merged. What the step mounted below it and left (its
// namespace is gone, its mounts may not be) makes it busy: then it is
// detached with those mounts, which only hide what the step wrote there.
func (o *Overlay) unmount() error {
	err := unix.Unmount(o.merged(), 0)
	if errors.Is(err, unix.EBUSY) {
		err = unix.Unmount(o.merged(), unix.MNT_DETACH)
	}
	if err != nil {
		return fmt.Errorf("unmounting overlay %s: %w", o.merged(), err)
	}
	o.mounted = false
	return nil
}

func (o *Overlay) clean() error {
	for _, d := range []string{o.upper(), o.work(), o.merged()} {
		if err := os.RemoveAll(d); err != nil {
			return fmt.Errorf("cleaning overlay scratch: %w", err)
		}
	}
	return nil
}

// upperScan turns the upper directory into changes: every entry is one, a
// 0/0 character device (or an xattr whiteout) is a whiteout, and an opaque
// directory hides its lower contents. The lower directory (root) is walked
// alongside, confined, to tell which opaque directories hide anything.
type upperScan struct {
	o     *Overlay
	set   *changeSet
	stats *Stats
	links copiedLinks // copies of lower files with several links (index=on)

	noIndex    bool   // overlay had no index: copy-ups split hardlinks
	split      int    // upper files whose lower file has other names (noIndex)
	splitFirst string // the first of them
}

// dir scans the upper directory name (in dirFD) at rel; lowerFD is the same
// directory in root, -1 when root has none there or it is hidden.
func (u *upperScan) dir(ctx context.Context, dirFD int, name, rel string, lowerFD int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f, names, err := openDir(dirFD, name, u.o.hostUpper(rel))
	if err != nil {
		return err
	}
	defer f.Close()
	var gone []string
	for _, n := range names {
		child := joinRel(rel, n)
		if u.o.exclude.excluded(child) {
			continue
		}
		u.stats.Scanned++
		if rootfs.ReservedName(n) {
			return fmt.Errorf("/%s: %w", child, ErrReservedName)
		}
		whiteout, err := u.entry(ctx, int(f.Fd()), n, child, lowerFD)
		if err != nil {
			return err
		}
		if whiteout {
			gone = append(gone, n)
		}
	}
	return u.deletions(rel, lowerFD, gone)
}

// deletions records the whiteouts overlayfs made in the directory rel: one
// opaque marker instead when they name everything the lower directory
// held, as Walk writes it.
func (u *upperScan) deletions(rel string, lowerFD int, gone []string) error {
	if len(gone) > 1 && lowerFD >= 0 {
		lower, err := u.lowerNames(rel, lowerFD)
		if err != nil {
			return err
		}
		if opaqueInstead(rel, len(lower), len(gone), u.o.exclude) {
			u.set.opaque(rel)
			return nil
		}
	}
	for _, n := range gone {
		u.set.whiteout(joinRel(rel, n))
	}
	return nil
}

// lowerNames lists the lower directory rel (open as lowerFD, O_PATH), less
// what is excluded.
func (u *upperScan) lowerNames(rel string, lowerFD int) ([]string, error) {
	f, names, err := openDir(lowerFD, ".", filepath.Join(u.o.root, filepath.FromSlash(rel)))
	if err != nil {
		return nil, err
	}
	f.Close()
	kept := names[:0]
	for _, n := range names {
		if !u.o.exclude.excluded(joinRel(rel, n)) {
			kept = append(kept, n)
		}
	}
	return kept, nil
}

// entry records one upper entry and descends into directories; a whiteout
// is returned to the caller, which records it.
func (u *upperScan) entry(ctx context.Context, dirFD int, name, rel string, lowerFD int) (whiteout bool, err error) {
	host := u.o.hostUpper(rel)
	st, err := lstatAt(dirFD, name, host)
	if err != nil {
		return false, err
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		if st.Rdev == 0 {
			return true, nil
		}
	case unix.S_IFREG:
		if st.Size == 0 && hasOverlayXattr(host, "whiteout") {
			return true, nil
		}
	case unix.S_IFDIR:
		return false, u.subdir(ctx, dirFD, name, rel, host, lowerFD)
	}
	u.set.entry(rel)
	u.links.note(&st, rel)
	if u.noIndex && lowerFD >= 0 && st.Mode&unix.S_IFMT == unix.S_IFREG {
		var lst unix.Stat_t
		if unix.Fstatat(lowerFD, name, &lst, unix.AT_SYMLINK_NOFOLLOW) == nil && lst.Mode&unix.S_IFMT == unix.S_IFREG && lst.Nlink > 1 {
			if u.split == 0 {
				u.splitFirst = rel
			}
			u.split++
		}
	}
	return false, nil
}

// subdir records the upper directory at rel, opaque when overlayfs marked
// it so and root has a directory there for it to hide, and scans it.
func (u *upperScan) subdir(ctx context.Context, dirFD int, name, rel, host string, lowerFD int) error {
	lower := openLowerDir(lowerFD, name)
	if lower >= 0 {
		defer unix.Close(lower)
	}
	v, err := overlayXattrValue(host, "opaque")
	if err != nil {
		return err
	}
	if v == "y" && lower >= 0 {
		u.set.opaque(rel)
		return u.dir(ctx, dirFD, name, rel, -1)
	}
	same, err := sameDir(host, lower, filepath.Join(u.o.root, filepath.FromSlash(rel)))
	if err != nil {
		return err
	}
	if !same {
		u.set.entry(rel)
	}
	return u.dir(ctx, dirFD, name, rel, lower)
}

// sameDir tells whether the upper directory host is the lower one (lowerFD,
// -1 when there is none; at lowerHost) copied up with the same metadata a layer carries:
// mode, owner and xattrs other than overlayfs's own (Walk's rule, see
// changed).
func sameDir(host string, lowerFD int, lowerHost string) (bool, error) {
	if lowerFD < 0 {
		return false, nil
	}
	var up, low unix.Stat_t
	if err := unix.Lstat(host, &up); err != nil {
		return false, &os.PathError{Op: "lstat", Path: host, Err: err}
	}
	if err := unix.Fstat(lowerFD, &low); err != nil {
		return false, err
	}
	if up.Mode != low.Mode || up.Uid != low.Uid || up.Gid != low.Gid {
		return false, nil
	}
	upX, err := xattrHash(host)
	if err != nil {
		return false, err
	}
	lowX, err := xattrHash(lowerHost)
	if err != nil {
		return false, err
	}
	return upX == lowX, nil
}

// openLowerDir opens the directory name in lowerFD, -1 when there is none
// (or lowerFD is -1); a symlink is never followed.
func openLowerDir(lowerFD int, name string) int {
	if lowerFD == -1 {
		return -1
	}
	fd, err := unix.Openat(lowerFD, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	return fd
}

// overlayXattrValue reads overlayfs's attribute name in either namespace.
func overlayXattrValue(host, name string) (string, error) {
	for _, ns := range []string{"trusted.overlay.", "user.overlay."} {
		v, err := getXattr(host, ns+name)
		if err != nil {
			return "", err
		}
		if v != nil {
			return string(v), nil
		}
	}
	return "", nil
}

func hasOverlayXattr(host, name string) bool {
	v, err := overlayXattrValue(host, name)
	return err == nil && v != ""
}

// scan reads the upper directory into set, and returns the copies of lower
// files with several links the index holds.
func (o *Overlay) scan(ctx context.Context, set *changeSet, stats *Stats) (copiedLinks, error) {
	lower, err := unix.Open(o.root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return copiedLinks{}, &os.PathError{Op: "open", Path: o.root, Err: err}
	}
	defer unix.Close(lower)
	links, err := o.readIndex()
	if err != nil {
		return links, err
	}
	u := &upperScan{o: o, set: set, stats: stats, links: links}
	// Without overlay's index (a user namespace, where the kernel refuses
	// it, or a kernel or filesystem without it) a copy-up of a file with
	// several names splits them: say so rather than leave it silent.
	_, err = os.Stat(filepath.Join(o.work(), "index"))
	u.noIndex = err != nil
	err = u.dir(ctx, unix.AT_FDCWD, o.upper(), "", lower)
	if u.split > 0 {
		stats.Warnings = append(stats.Warnings, fmt.Sprintf("the step wrote %d files that have other names (hardlinks) in the layers below, /%s among them: "+
			"overlay cannot keep a file's names one file here (no index: a user namespace, or this kernel), so where the step changed it in place "+
			"its other names keep the old content; --snapshot walk with --layer-store=false keeps them one", u.split, u.splitFirst))
	}
	return links, err
}

func (o *Overlay) hostUpper(rel string) string {
	return filepath.Join(o.upper(), filepath.FromSlash(rel))
}

// writeAndApply writes the layer to out and, from the same bytes, applies it
// to root.
func (o *Overlay) writeAndApply(ctx context.Context, changes []change, out io.Writer, stats *Stats) error {
	root, err := rootfs.Open(o.root)
	if err != nil {
		return err
	}
	type result struct {
		warnings []string
		err      error
	}
	pr, pw := io.Pipe()
	applied := make(chan result, 1)
	go func() {
		as, err := root.ApplyLayer(ctx, pr)
		var warnings []string
		if err == nil {
			warnings = as.Warnings
			_, err = io.Copy(io.Discard, pr) // the tar's trailing padding
		}
		pr.CloseWithError(err)
		applied <- result{warnings, err}
	}()
	werr := newLayerWriter(o.upper(), o.opts, io.MultiWriter(out, pw), stats).write(ctx, changes)
	pw.CloseWithError(werr)
	res := <-applied
	if werr != nil {
		return werr
	}
	if res.err != nil {
		return fmt.Errorf("applying the overlay's change to %s: %w", o.root, res.err)
	}
	stats.Warnings = append(stats.Warnings, res.warnings...)
	return nil
}

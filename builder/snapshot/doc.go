// Package snapshot turns what a RUN step changed in a root filesystem
// directory into an OCI layer: an uncompressed tar of the added and modified
// files, directories, symlinks and hardlinks, with their modes (setuid
// included), owners, xattrs (SCHILY.xattr.*) and mtimes, and whiteouts
// (".wh.NAME", ".wh..wh..opq") for what was deleted. builder/rootfs applies
// such a layer to a copy of the tree before the step to give the tree after.
//
// Two strategies give the same layer for the same step. Overlay runs the step
// on an overlay mount whose upper directory is exactly the change, so its
// cost follows the size of the change; it needs the right to mount:
//
//	o, err := snapshot.NewOverlay(root, scratch, snapshot.Options{Exclude: []string{"/proc", "/dev"}})
//	merged, err := o.Mount(ctx) // errors.Is(err, snapshot.ErrOverlayUnsupported): use Walk
//	// ... run the step chrooted into merged ...
//	stats, err := o.Diff(ctx, layerFile) // unmounts; root now holds the step's result
//	// or, when the step failed: o.Close() // root unchanged
//
// Diff is Detach (unmount, read the change) and Change.Apply. A caller that
// mounts root itself as an overlay of layer folders can instead keep the
// change as a folder of its own and stack it on root (Change.Keep, after
// moving the upper directory's entries there), then write its layer later
// (Change.Write), while the next step runs:
//
//	c, err := o.Detach(ctx)
//	if c.Stackable() { /* move c.Dir()'s entries to dir, remount root over dir */ stats, err = c.Keep(dir); go c.Write(ctx, layerFile) }
//
// Walk compares the tree with a stat record taken before the step (size,
// mode, owner, mtime, ctime, inode, link count, link target, and the xattrs
// of entries changed in the second before it) and works everywhere:
//
//	w := snapshot.NewWalk(root, opts)
//	err := w.Before(ctx)
//	// ... run the step chrooted into root ...
//	stats, err := w.Diff(ctx, layerFile)
//
// Walk visits directories on up to GOMAXPROCS goroutines, never follows a
// symlink, and leaves out directories another filesystem is mounted on as
// if they were excluded (bind-mounted files must be excluded by name).
//
// Supported tells, once per process, whether Overlay can be used here.
//
// The tar is deterministic: entries in lexical order of path components
// (parents before children, whiteouts among their siblings), mtimes in whole
// seconds clamped to Options.SourceDateEpoch, no user or group names. File
// contents are streamed. Excluded paths (Options.Exclude: /proc, bind-mount
// targets, the builder's own directories) are neither written nor whiteouted
// nor descended into.
//
// Deletions: a whiteout per name gone, or one opaque marker for a directory
// all of whose (several) names are gone; Overlay also keeps the opaque
// marker overlayfs puts on a directory removed and made again. Where the
// strategies' forms differ, their layers still apply to the same tree.
//
// A stat-based Walk cannot see a change that keeps size, mode, owner, mtime,
// ctime, inode and link count: one made by a process that resets the clock,
// or a same-size rewrite within the clock tick of a change made just before
// Before (xattrs of such recent entries are compared).
//
// Hardlinks: Overlay mounts with index=on, so that a step writing one name
// of a lower file with several links changes the file under every name, as
// on a plain filesystem; the upper directory holds only the names written,
// so Diff looks the file's other names up in the tree below (one walk of
// it, in such a step only) and writes them as links to the copy: the layer
// is Walk's. Where the kernel or filesystem refuses the index, overlayfs
// breaks such a link on copy-up, as it does for any container, and there
// the strategies differ (Walk keeps the other names linked).
package snapshot

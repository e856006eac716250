// Package rootfs turns image layers into a directory tree, the build's root
// filesystem, the way a container runtime would, and never writes outside
// that directory whatever a layer contains. It is Linux-only (openat,
// O_PATH, mknodat, xattrs), like the builds it serves.
//
// A Root names the directory. Layers are applied in order; each is an
// uncompressed OCI layer tar with its whiteouts:
//
//	root, err := rootfs.Open(dir)
//	if err != nil {
//		return err
//	}
//	stats, err := root.Unpack(ctx, img) // every layer of a go-containerregistry v1.Image
//	if err != nil {
//		return err
//	}
//	for _, w := range stats.Warnings {
//		log.Warn(w) // devices not created, xattrs or ownership not applied...
//	}
//
//	_, err = root.UnpackLayer(ctx, layer) // one more v1.Layer on top (into an empty root: that layer alone)
//
//	rc, _ := layer.Uncompressed()
//	defer rc.Close()
//	_, err = root.ApplyLayer(ctx, rc) // the same from a stream: a tar
//
// Paths as the container sees them map to host paths with Resolve, which
// follows symlinks as the kernel would if the root were "/":
//
//	host, err := root.Resolve("/usr/bin/../lib/os-release", true) // dir/usr/lib/os-release
//
// # Confinement
//
// No path is ever resolved by the host kernel from a joined string. A
// folder of the root is opened from a descriptor of the root either with
// one openat2 that refuses every symlink and every way out of the root
// (RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS), which succeeds only when the path
// is plain folders, or, for anything else (a symlink on the way, a folder
// to make, a kernel without openat2), by a walk one component at a time
// (openat with O_NOFOLLOW) that reads symlinks itself: an absolute target
// restarts at the root, ".." stops at the root, and the last component of
// an entry is never followed. The folders a layer is filling stay open
// from one entry to the next, until something that a path may lead
// through (a folder, a symlink) is removed. Files are created with
// O_CREAT|O_EXCL|O_NOFOLLOW; when the name is taken, whatever held it is
// removed first. Like containerd's archive.Apply,
// an entry named "../../etc/x" or "/etc/x" lands at root/etc/x (the former
// with a warning) and a hardlink target is resolved the same way; a hardlink
// whose target is missing inside the root is an error.
//
// The guarantee is against the layer's content. A Root must not be written
// by anything else (a running container) while a layer is applied.
//
// KILN_NO_OPENAT2=1 in the environment makes every lookup walk, as on a
// kernel without openat2.
//
// # Speed
//
// Unpack and UnpackLayer read each layer (fetch, decompress, check its
// digests) in a goroutine of their own, a few MiB ahead of the writing,
// and Unpack opens the next layer while one is applied. A regular file
// costs what it costs GNU tar: create, write, chown, chmod, set times and
// close, the metadata through the open descriptor; nothing is fsynced
// (a root is scratch, rebuilt if lost).
//
// # Whiteout names
//
// A name starting with ".wh." is a deletion in a layer, so no writer of
// layers may put a file of that name in one: ReservedName is the test and
// CheckName the error (wrapping ErrReservedName) that COPY, ADD and the RUN
// snapshot share.
//
//	if err := rootfs.CheckName("etc/.wh.passwd"); err != nil {
//		return err // etc/.wh.passwd: a name starting with .wh. means a deletion in an image layer
//	}
//
// # Privilege
//
// Run as root, a Root applies ownership, creates device nodes and sets every
// xattr namespace. Otherwise (or with WithPrivileged(false)) ownership is
// recorded in ApplyStats.SkippedOwners instead, devices and trusted.* and
// security.* xattrs are skipped with a warning, and directories are kept
// writable by their owner until the end of each layer so that read-only
// directories (0555 /usr/lib on Fedora) can still be filled.
package rootfs

package snapshot

import (
	"errors"

	"kiln/builder/rootfs"
)

var (
	// ErrOverlayUnsupported means the overlay mount was refused (no
	// privilege, no overlay filesystem, or an upper directory the kernel
	// cannot use): take the snapshot with Walk instead.
	ErrOverlayUnsupported = errors.New("overlay snapshots are not supported here")

	// ErrNoBefore means Walk.Diff was called without a successful Before.
	ErrNoBefore = errors.New("snapshot: Diff called before Before")

	// ErrReservedName means the tree holds a name a layer cannot carry: one
	// starting with ".wh.", which appliers read as a whiteout. It is
	// rootfs.ErrReservedName, which COPY and ADD refuse such names with.
	ErrReservedName = rootfs.ErrReservedName

	// ErrScratchInRoot means an Overlay's scratch directory is inside the
	// root it would snapshot, which would then hold its own upper.
	ErrScratchInRoot = errors.New("overlay scratch inside the root")

	// ErrNotMounted means Overlay.Diff was called without a successful Mount.
	ErrNotMounted = errors.New("snapshot: overlay not mounted")
)

package rootfs

import "errors"

// ErrReservedName is wrapped by the error for a file whose name a layer
// cannot carry as itself: one starting with ".wh.", which every applier
// reads as a deletion (an OCI whiteout, an opaque marker, AUFS metadata).
// Copying such a file into a layer would delete a file of the image for
// everyone who pulls it.
var ErrReservedName = errors.New("a name starting with .wh. means a deletion in an image layer")

// ErrInvalidLayer is wrapped by the error for a layer entry that cannot be
// applied safely or has no meaning: a whiteout naming "." or "..", a hardlink
// to the root, an entry type a root filesystem cannot hold.
//
// Too many symlinks while resolving a path (more than 255) is reported as
// syscall.ELOOP; a non-directory in the middle of a path as syscall.ENOTDIR.
var ErrInvalidLayer = errors.New("invalid layer")

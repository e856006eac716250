package rootfs

import "errors"

// ErrInvalidLayer is wrapped by the error for a layer entry that cannot be
// applied safely or has no meaning: a whiteout naming "." or "..", a hardlink
// to the root, an entry type a root filesystem cannot hold.
//
// Too many symlinks while resolving a path (more than 255) is reported as
// syscall.ELOOP; a non-directory in the middle of a path as syscall.ENOTDIR.
var ErrInvalidLayer = errors.New("invalid layer")

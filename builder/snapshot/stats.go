package snapshot

// Stats tells what one snapshot wrote and how much it looked at.
type Stats struct {
	Files     int   // regular files written with content
	Dirs      int   // directory entries
	Symlinks  int   // symlinks
	Hardlinks int   // hardlink entries (second and later paths to an inode)
	Devices   int   // character and block devices and fifos
	Whiteouts int   // ".wh.NAME" entries
	Opaque    int   // ".wh..wh..opq" entries
	Bytes     int64 // file content written
	Skipped   int   // sockets, which a layer cannot carry
	Scanned   int   // tree entries examined to find the change
	// Warnings are what Overlay.Diff could not apply to root (ownership or
	// devices an unprivileged process cannot make), from builder/rootfs, and
	// the hardlinks overlay split (see Overlay.scan).
	Warnings []string
}

// Empty tells a snapshot that wrote no entry: no layer is needed.
func (s *Stats) Empty() bool {
	return s.Files+s.Dirs+s.Symlinks+s.Hardlinks+s.Devices+s.Whiteouts+s.Opaque == 0
}

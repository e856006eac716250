package rootfs

import (
	"fmt"
	"maps"
)

// maxWarnings bounds ApplyStats.Warnings: a layer of 50,000 files on a
// filesystem without xattrs must not make 50,000 messages.
const maxWarnings = 100

// ApplyStats tells what applying one layer (or, from Unpack, all of them) did.
type ApplyStats struct {
	Entries   int   // tar headers read
	Files     int   // regular files written
	Dirs      int   // directory entries applied (made or merged)
	Symlinks  int   // symlinks made
	Hardlinks int   // hardlinks made
	Devices   int   // character and block devices and fifos made
	Whiteouts int   // whiteouts and opaque markers applied
	Bytes     int64 // file content written
	// Warnings are what was skipped rather than failing the layer.
	Warnings []string
	// SkippedOwners holds, by container path ("/etc/shadow"), the ownership
	// entries asked for but did not get because ownership was not applied
	// (unprivileged, or WithChown(false)). From Unpack it may name paths a
	// later layer deleted.
	SkippedOwners map[string]Owner

	dropped int         // warnings past maxWarnings
	lookups lookupStats // how the entries' folders were found
}

// lookupStats count how applier.dir found folders: in its cache, with one
// openat2, or by walking. Tests check which path they took.
type lookupStats struct{ cached, beneath, walked int }

// Owner is a numeric user and group.
type Owner struct{ UID, GID int }

func (s *ApplyStats) warn(format string, args ...any) {
	if len(s.Warnings) >= maxWarnings {
		s.dropped++
		return
	}
	s.Warnings = append(s.Warnings, fmt.Sprintf(format, args...))
}

func (s *ApplyStats) skipOwner(rel string, o Owner) {
	if s.SkippedOwners == nil {
		s.SkippedOwners = map[string]Owner{}
	}
	s.SkippedOwners["/"+rel] = o
}

// finish adds the summaries that replace one warning per entry.
func (s *ApplyStats) finish() {
	if n := len(s.SkippedOwners); n > 0 {
		s.Warnings = append(s.Warnings, fmt.Sprintf("ownership of %d entries not applied (see SkippedOwners)", n))
	}
	if s.dropped > 0 {
		s.Warnings = append(s.Warnings, fmt.Sprintf("%d more warnings not shown", s.dropped))
		s.dropped = 0
	}
}

// add folds the stats of layer i into s.
func (s *ApplyStats) add(i int, o *ApplyStats) {
	s.Entries += o.Entries
	s.Files += o.Files
	s.Dirs += o.Dirs
	s.Symlinks += o.Symlinks
	s.Hardlinks += o.Hardlinks
	s.Devices += o.Devices
	s.Whiteouts += o.Whiteouts
	s.Bytes += o.Bytes
	s.lookups.cached += o.lookups.cached
	s.lookups.beneath += o.lookups.beneath
	s.lookups.walked += o.lookups.walked
	for _, w := range o.Warnings {
		s.Warnings = append(s.Warnings, fmt.Sprintf("layer %d: %s", i, w))
	}
	if len(o.SkippedOwners) > 0 && s.SkippedOwners == nil {
		s.SkippedOwners = map[string]Owner{}
	}
	maps.Copy(s.SkippedOwners, o.SkippedOwners)
}

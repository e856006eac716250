package snapshot

import (
	"path"
	"strings"
	"time"
)

// Options configures a snapshot.
type Options struct {
	// Exclude holds absolute container paths ("/proc", "/etc/resolv.conf")
	// that are never in the layer, never whiteouted and not descended into.
	Exclude []string
	// SourceDateEpoch, when set, clamps every mtime in the layer to it, for
	// reproducible builds.
	SourceDateEpoch *time.Time
	// MapIDs, when set, turns the owner a file has on disk into the owner
	// the layer records: a rootless step's files belong to host ids that
	// stand for the user namespace's (run.ContainerIDs).
	MapIDs func(uid, gid int) (int, int)
}

// excluder answers whether a path relative to the root is excluded.
type excluder map[string]bool

func newExcluder(paths []string) excluder {
	e := excluder{}
	for _, p := range paths {
		rel := strings.TrimPrefix(path.Clean("/"+p), "/")
		if rel != "" {
			e[rel] = true
		}
	}
	return e
}

// excluded is only asked about paths whose parents are not excluded: the
// walks do not descend into excluded directories.
func (e excluder) excluded(rel string) bool { return e[rel] }

// below tells whether an excluded path lies below the directory rel ("" is
// the root).
func (e excluder) below(rel string) bool {
	for p := range e {
		if rel == "" || strings.HasPrefix(p, rel+"/") {
			return true
		}
	}
	return false
}

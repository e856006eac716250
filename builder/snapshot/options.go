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
	// Lowers, when set, are the folders (the top first) an Overlay mounts
	// the step's overlay on instead of root: together they must show
	// exactly what root shows (a stage that is itself an overlay of these
	// folders, with nothing in its upper folder), and none of them may be
	// another mount's upper folder. A step's file operations then cross
	// one overlay, not an overlay on an overlay, which costs them two to
	// three times as much. root is still what the change is read against.
	Lowers []string
	// UserXattr says that Lowers keep overlay's whiteout and opaque marks
	// in user.overlay.* xattrs (a store made in a user namespace): the
	// overlay is then mounted with userxattr, and only then.
	UserXattr bool
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

package layerstore

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"sync"
)

// ErrNotStorable: the layers cannot be stored as they are here (an owner
// this user namespace does not map): the caller unpacks the stage instead.
var ErrNotStorable = errors.New("layers cannot be stored here as they are")

// identityMap is /proc/self/uid_map (and gid_map) in the initial user
// namespace.
const identityMap = "0 0 4294967295"

// userNS names the store of this process's user namespace, "" in the
// initial one. A stored tree holds its files' owners as the namespace that
// unpacked it sees them, so each id mapping (root on the host; a rootless
// kiln in its own namespace, per user and subordinate range) keeps a store
// of its own, named by a hash of its uid and gid maps.
var userNS = sync.OnceValue(func() string {
	uidMap, err1 := os.ReadFile("/proc/self/uid_map")
	gidMap, err2 := os.ReadFile("/proc/self/gid_map")
	if err1 != nil || err2 != nil {
		return ""
	}
	u, g := strings.Join(strings.Fields(string(uidMap)), " "), strings.Join(strings.Fields(string(gidMap)), " ")
	if u == identityMap && g == identityMap {
		return ""
	}
	sum := sha256.Sum256([]byte(u + "\n" + g))
	return "userns-" + hex.EncodeToString(sum[:8])
})

// UserXattr tells whether this process's store keeps overlay's whiteout
// and opaque marks in user.overlay.* xattrs (a user namespace other than
// the initial): an overlay mounted on its folders must say userxattr.
func UserXattr() bool { return userNS() != "" }

// mountExtras adapts overlay option sets to this user namespace: in one
// other than the initial, overlay keeps its whiteout and opaque marks in
// user.overlay.* xattrs (userxattr), and a store made there must never be
// mounted without them, which would ignore its opaque folders.
func mountExtras(extras []string) []string {
	if userNS() == "" {
		return extras
	}
	out := make([]string, len(extras))
	for i, e := range extras {
		out[i] = e + ",userxattr"
	}
	return out
}

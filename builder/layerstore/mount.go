package layerstore

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrCannotMount says a stack of stored layers cannot be mounted here (too
// many layers for one mount's options, a path overlay cannot carry, no
// privilege): the caller unpacks the stage instead.
var ErrCannotMount = errors.New("cannot mount stored layers here")

// maxMountData is what one mount(2) carries in its data page, with room
// to spare for the other options.
const maxMountData = 3800

// Mount mounts on target an overlay of the stored layer folders lowers
// (the top layer first) with the stage's writable upper and work folders:
// the stage's filesystem, with what its steps add going to upper. The
// mount is nodev, like every filesystem a RUN step sees. The upper is
// volatile: it lives only as long as the build, which discards it if it
// dies.
func Mount(lowers []string, upper, work, target string) error {
	return mountLayers(lowers, upper, work, target, true, true)
}

// mountLayers mounts the overlay; a volatile one skips the syncs a
// durable upper needs; an exported one can be the lower of an index=on
// overlay.
func mountLayers(lowers []string, upper, work, target string, volatile, exported bool) error {
	base, err := mountData(lowers, upper, work)
	if err != nil {
		return err
	}
	plain := ",metacopy=off,redirect_dir=off,index=off"
	extras := []string{plain, ""}
	if volatile {
		extras = []string{plain + ",volatile", ",volatile", plain, ""}
	}
	if volatile && exported {
		// A stage's stack is exported (index=on,nfs_export=on) so that the
		// overlay each RUN step mounts on it can use index=on too, which
		// keeps a hardlinked file's names one file when the step writes
		// to one of them (builder/snapshot); without it overlay falls back
		// to index=off for the step's mount.
		exported := ",metacopy=off,redirect_dir=nofollow,index=on,nfs_export=on"
		extras = []string{exported + ",volatile", exported, plain + ",volatile", ",volatile", plain, ""}
	}
	for _, extra := range mountExtras(extras) {
		err = unix.Mount("overlay", target, "overlay", unix.MS_NODEV, base+extra)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EINVAL) {
			break
		}
	}
	return fmt.Errorf("%w: mounting %d stored layers on %s: %v", ErrCannotMount, len(lowers), target, err)
}

// mountData is the overlay's folders as mount options, or ErrCannotMount.
func mountData(lowers []string, upper, work string) (string, error) {
	for _, p := range append([]string{upper, work}, lowers...) {
		if strings.ContainsAny(p, ",:") {
			return "", fmt.Errorf("%w: path %q holds ',' or ':'", ErrCannotMount, p)
		}
	}
	base := "lowerdir=" + strings.Join(lowers, ":") + ",upperdir=" + upper + ",workdir=" + work
	if len(base) > maxMountData {
		return "", fmt.Errorf("%w: %d layers make %d bytes of mount options", ErrCannotMount, len(lowers), len(base))
	}
	return base, nil
}

// CanMount says whether Mount can carry these folders (their number and
// names); nil: it can try.
func CanMount(lowers []string, upper, work string) error {
	_, err := mountData(lowers, upper, work)
	return err
}

// Stack is the folders of an overlay Mount makes: the lowers (the top
// first), the writable upper and overlay's work folder.
type Stack struct {
	Lowers      []string
	Upper, Work string
}

// CopyRootAttrs gives dir the owner, mode and times of the folder from:
// an overlay's merged root shows its upper folder's attributes, which must
// be those of the image's root, not of a folder kiln made.
func CopyRootAttrs(from, dir string) error {
	var st unix.Stat_t
	if err := unix.Stat(from, &st); err != nil {
		return err
	}
	if err := unix.Chown(dir, int(st.Uid), int(st.Gid)); err != nil {
		return err
	}
	if err := unix.Chmod(dir, st.Mode&07777); err != nil {
		return err
	}
	return unix.UtimesNano(dir, []unix.Timespec{st.Atim, st.Mtim})
}

// Unmount detaches a stack Mount made.
func Unmount(target string) error {
	if err := unix.Unmount(target, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("unmounting %s: %w", target, err)
	}
	return nil
}

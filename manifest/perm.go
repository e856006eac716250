package manifest

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Who may read and write a layout.
//
// A cache is written by one identity (the warm CronJob, often root) and read
// by others (build pods running as non-root users, with the volume mounted
// read-only), so what kiln writes must not depend on the writer's umask:
//
//   - Committed blobs are 0444, read-only for everyone, as in containerd's
//     content store. Temporary files are 0444 too, so that any sweeper can
//     open them to test their writer's lock; the writer writes through the
//     descriptor it created them with.
//   - Folders are 0755 and index.json, oci-layout and the lock files 0644,
//     unless the layout folder is group-writable (a Kubernetes fsGroup
//     volume is setgid and group rwx): then folders are 0775 and setgid if
//     it is, files 0664, so that several warmers sharing that group can all
//     write. A sticky folder (/tmp) is a scratch area, not a team's: it
//     shares nothing.
//   - A reader needs no write access at all: its shared lock is taken on a
//     file opened read-only (see lockFile).
//
// Modes are set with chmod after creating, never left to the umask. Caches
// written by older kilns (blobs 0600) are repaired by the next warm
// (RepairModes).

// blobMode is the mode of committed blobs and of temporary files.
const blobMode fs.FileMode = 0o444

// perms are the modes of the folders and files kiln creates in a layout.
type perms struct {
	dir  fs.FileMode // folders, with fs.ModeSetgid if the layout folder has it
	file fs.FileMode // index.json, oci-layout, lock files
}

var defaultPerms = perms{dir: 0o755, file: 0o644}

// permsUnder returns the modes for what is created in folder dir, or the
// defaults if it cannot be read.
func permsUnder(dir string) perms {
	fi, err := os.Stat(dir)
	if err != nil {
		return defaultPerms
	}
	return permsFor(fi.Mode())
}

// permsFor derives the modes from a folder's mode: group-writable only where
// the folder is, and not a sticky scratch folder.
func permsFor(m fs.FileMode) perms {
	if m&0o020 == 0 || m&fs.ModeSticky != 0 {
		return defaultPerms
	}
	p := perms{dir: 0o775, file: 0o664}
	if m&fs.ModeSetgid != 0 {
		p.dir |= fs.ModeSetgid
	}
	return p
}

// mkdirAll creates path and any missing parents with mode, chmodding every
// folder it made (the umask must not decide).
func mkdirAll(path string, mode fs.FileMode) error {
	if fi, err := os.Stat(path); err == nil {
		if fi.IsDir() {
			return nil
		}
		return &fs.PathError{Op: "mkdir", Path: path, Err: syscall.ENOTDIR}
	}
	if parent := filepath.Dir(path); parent != path {
		if err := mkdirAll(parent, mode); err != nil {
			return err
		}
	}
	if err := os.Mkdir(path, mode.Perm()); err != nil {
		if fi, serr := os.Stat(path); serr == nil && fi.IsDir() {
			return nil // another process made it
		}
		return err
	}
	return os.Chmod(path, mode)
}

// MkdirShared creates the folder path, and any missing parents, with the
// mode kiln gives folders in the nearest existing folder above it (see
// perms): 0755, or 0775 and setgid in a group-shared volume.
func MkdirShared(path string) error {
	parent := filepath.Dir(path)
	for {
		if _, err := os.Stat(parent); err == nil || filepath.Dir(parent) == parent {
			break
		}
		parent = filepath.Dir(parent)
	}
	return mkdirAll(path, permsUnder(parent).dir)
}

// AccessError is a cache folder or file this user may not use as needed:
// it says who the user is, what the path's mode and owner are, and how to
// fix it. errors.Is(err, fs.ErrPermission) (or syscall.EROFS for a
// read-only mount) holds.
type AccessError struct {
	Path string
	// Need is what was needed: "read", "write" or "lock".
	Need string
	// UID and GID are this process's effective ids; Groups its
	// supplementary groups.
	UID, GID int
	Groups   []int
	// Mode, Owner and Group describe Path; Mode is 0 if it could not be
	// stat'ed.
	Mode         fs.FileMode
	Owner, Group int
	// ReadOnly: Path is on a read-only mount.
	ReadOnly bool
	Err      error
}

func (e *AccessError) Error() string {
	var b strings.Builder
	what := "cache folder"
	if e.Mode != 0 && !e.Mode.IsDir() {
		what = "cache file"
	}
	verb := map[string]string{"read": "read", "write": "write to", "lock": "lock"}[e.Need]
	if verb == "" {
		verb = e.Need
	}
	fmt.Fprintf(&b, "uid %d (gid %d", e.UID, e.GID)
	if len(e.Groups) > 0 {
		fmt.Fprintf(&b, ", groups %s", strings.Trim(fmt.Sprint(e.Groups), "[]"))
	}
	fmt.Fprintf(&b, ") cannot %s the %s %s", verb, what, e.Path)
	switch {
	case e.ReadOnly:
		b.WriteString(": it is on a read-only mount")
	case e.Mode != 0:
		fmt.Fprintf(&b, ": mode %s (%s), owned by uid %d gid %d", e.Mode, octal(e.Mode), e.Owner, e.Group)
	default:
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	b.WriteString(". ")
	b.WriteString(e.fix())
	return b.String()
}

// fix suggests what to change.
func (e *AccessError) fix() string {
	if e.Need == "write" {
		if e.ReadOnly {
			return "kiln warm needs a read-write mount of the cache (builds may mount it readOnly: true)"
		}
		return fmt.Sprintf("kiln warm needs write access: run it as uid %d, or let every warmer share one group "+
			"(Kubernetes: securityContext.fsGroup makes the volume group-writable and setgid, and kiln keeps what it writes group-writable)", e.Owner)
	}
	return "A build only needs to read the cache: make it readable to this user " +
		"(Kubernetes: set the pod's securityContext.fsGroup to the volume's group; elsewhere chmod 0755 the folders, " +
		"and run kiln warm once as the cache's owner, which makes every blob readable) and mount it readOnly: true"
}

func (e *AccessError) Unwrap() error { return e.Err }

// octal is m as chmod takes it: "0755", "2775".
func octal(m fs.FileMode) string {
	n := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		n |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		n |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		n |= 0o1000
	}
	return fmt.Sprintf("%04o", n)
}

// accessError wraps err in an *AccessError about path if it is a
// permission error or a read-only mount, and returns it unchanged
// otherwise. A path that cannot even be stat'ed is described by the
// nearest folder above it that can: the one in the way.
func accessError(path, need string, err error) error {
	var already *AccessError
	if err == nil || errors.As(err, &already) {
		return err
	}
	ro := errors.Is(err, syscall.EROFS)
	if !ro && !errors.Is(err, fs.ErrPermission) {
		return err
	}
	e := &AccessError{Path: path, Need: need, UID: os.Geteuid(), GID: os.Getegid(), ReadOnly: ro, Err: err}
	if groups, gerr := os.Getgroups(); gerr == nil {
		for _, g := range groups {
			if g != e.GID {
				e.Groups = append(e.Groups, g)
			}
		}
	}
	for p := path; ; p = filepath.Dir(p) {
		if fi, serr := os.Stat(p); serr == nil {
			e.Path, e.Mode = p, fi.Mode()
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				e.Owner, e.Group = int(st.Uid), int(st.Gid)
			}
			break
		}
		if filepath.Dir(p) == p {
			break
		}
	}
	return e
}

// writable reports whether this process may create files in dir, as an
// *AccessError if not.
func writable(dir string) error {
	if err := unix.Access(dir, unix.W_OK|unix.X_OK); err != nil {
		return accessError(dir, "write", &fs.PathError{Op: "access", Path: dir, Err: err})
	}
	return nil
}

// CheckWritable reports, as an *AccessError, whether this process may add
// blobs to the layout and replace its index.json.
func (l *Layout) CheckWritable() error {
	for _, d := range []string{l.dir, filepath.Join(l.dir, "blobs", "sha256"), filepath.Join(l.dir, kilnDir)} {
		if err := writable(d); err != nil {
			return err
		}
	}
	return nil
}

// ModeRepair says what RepairModes changed and what it could not.
type ModeRepair struct {
	// Fixed lists the files and folders whose mode was changed.
	Fixed []string
	// Failed are the files and folders left unreadable to other users
	// that this process may not chmod (another user's), with why.
	Failed []string
}

// RepairModes gives every folder, file and blob of the layout the mode
// kiln writes them with today (see perms), in place: a cache written by an
// older kiln, whose blobs were 0600, becomes readable to every user without
// downloading anything. The layout folder's own mode is left alone: it is
// what the others are derived from. Files of other users that this process
// may not chmod are left as they are and reported if others cannot read
// them. Temporary files are not touched.
func (l *Layout) RepairModes() (ModeRepair, error) {
	var rep ModeRepair
	fix := func(path string, fi fs.FileInfo, want fs.FileMode) {
		have := fi.Mode() & (fs.ModePerm | fs.ModeSetgid)
		if have == want {
			return
		}
		if err := os.Chmod(path, want); err != nil {
			if fi.Mode()&0o004 == 0 || fi.IsDir() && fi.Mode()&0o001 == 0 {
				rep.Failed = append(rep.Failed, fmt.Sprintf("%s (%s): %v", path, fi.Mode(), err))
			}
			return
		}
		rep.Fixed = append(rep.Fixed, path)
	}
	for _, d := range []string{filepath.Join(l.dir, "blobs"), filepath.Join(l.dir, "blobs", "sha256"), filepath.Join(l.dir, kilnDir)} {
		if fi, err := os.Lstat(d); err == nil && fi.IsDir() {
			fix(d, fi, l.perm.dir)
		}
	}
	for _, f := range []string{filepath.Join(l.dir, layoutFile), filepath.Join(l.dir, indexFile)} {
		if fi, err := os.Lstat(f); err == nil && fi.Mode().IsRegular() {
			fix(f, fi, l.perm.file)
		}
	}
	locks, _ := filepath.Glob(filepath.Join(l.dir, kilnDir, "*.lock"))
	for _, f := range locks {
		if fi, err := os.Lstat(f); err == nil && fi.Mode().IsRegular() {
			fix(f, fi, l.perm.file)
		}
	}
	blobs, err := l.Blobs()
	if err != nil {
		return rep, fmt.Errorf("repairing modes in %s: %w", l.dir, err)
	}
	for _, b := range blobs {
		if b.Temp {
			continue
		}
		if fi, err := os.Lstat(b.Path); err == nil && fi.Mode().IsRegular() {
			fix(b.Path, fi, blobMode)
		}
	}
	return rep, nil
}

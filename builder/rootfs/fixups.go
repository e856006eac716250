package rootfs

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// dirFixup is what a directory gets once the layer is written: writing into
// a directory changes its mtime, and an unprivileged apply keeps it writable
// meanwhile.
type dirFixup struct {
	rel   string
	mode  uint32
	times *[2]unix.Timespec // nil: a lower layer's directory, only made writable for a while
}

// fixups are applied last registered first, so that children, which come
// after their parents in a layer, are done while their parents are still
// writable and searchable.
type fixups struct {
	list  []dirFixup
	index map[string]int
}

// dir registers a directory entry of the layer; it wins over a restore.
func (f *fixups) dir(rel string, mode uint32, times [2]unix.Timespec) {
	f.set(dirFixup{rel: rel, mode: mode, times: &times}, true)
}

// restore registers giving a lower layer's directory its mode back.
func (f *fixups) restore(rel string, mode uint32) {
	f.set(dirFixup{rel: rel, mode: mode}, false)
}

func (f *fixups) set(d dirFixup, override bool) {
	if i, ok := f.index[d.rel]; ok {
		if override {
			f.list[i] = d
		}
		return
	}
	f.index[d.rel] = len(f.list)
	f.list = append(f.list, d)
}

func (f *fixups) run(a *applier) error {
	for i := len(f.list) - 1; i >= 0; i-- {
		a.dirs.settle()
		if err := a.fixDir(f.list[i]); err != nil {
			return err
		}
	}
	return nil
}

// fixDir applies fx, unless a later entry of the layer removed or replaced
// the directory.
func (a *applier) fixDir(fx dirFixup) error {
	dir, name := splitRel(fx.rel)
	d, ok, err := a.dir(dir, dirLookup)
	if errors.Is(err, unix.ENOTDIR) || err == nil && !ok {
		return nil
	}
	if err != nil {
		return err
	}
	var st unix.Stat_t
	if unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil
	}
	if err := unix.Fchmodat(d.fd, name, fx.mode, 0); err != nil {
		return &os.PathError{Op: "chmod", Path: "/" + fx.rel, Err: err}
	}
	if fx.times == nil {
		return nil
	}
	return pathErr("utimes", d, name, unix.UtimesNanoAt(d.fd, name, fx.times[:], unix.AT_SYMLINK_NOFOLLOW))
}

// makeWritable is the walk's prepare hook for an unprivileged apply: a
// directory its owner cannot write (0555 /usr/lib) becomes so until the
// layer ends. Root needs none of this.
func (a *applier) makeWritable(dir int, name, rel string, st *unix.Stat_t) error {
	if st.Mode&0o700 == 0o700 {
		return nil
	}
	if err := unix.Fchmodat(dir, name, st.Mode&0o7777|0o700, 0); err != nil {
		return &os.PathError{Op: "chmod", Path: "/" + rel, Err: err}
	}
	a.fixups.restore(rel, st.Mode&0o7777)
	return nil
}

package run

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Kinds of mountOp.
const (
	mountProc = "proc"
	mountDev  = "dev"
	mountSys  = "sys"
	mountBind = "bind"
)

// mountOp is one mount the init makes, its Target already resolved to a
// host path confined to the root.
type mountOp struct {
	Kind     string
	Source   string `json:",omitempty"`
	Target   string
	ReadOnly bool `json:",omitempty"`
}

// hostNetFiles are bound read-only into a step that shares the host network.
var hostNetFiles = [...]string{"/etc/resolv.conf", "/etc/hosts"}

// createdPath is a mount point Run made. top marks the first one made in
// a directory that existed, whose times are restored when it is removed.
type createdPath struct {
	path  string
	top   bool
	times [2]unix.Timespec // the parent's atime and mtime before
}

// planMounts resolves every mount target inside the root and creates the
// missing mount points; created lists them, parents first, for
// removeCreated, even when err is not nil.
func planMounts(spec Spec) (ops []mountOp, created []createdPath, err error) {
	add := func(kind, source, target string, dir, ro bool) error {
		p, err := securePath(spec.Root, target)
		if err != nil {
			return err
		}
		if filepath.Clean(p) == filepath.Clean(spec.Root) {
			return fmt.Errorf("%w: cannot mount over the root (%s)", ErrBadSpec, target)
		}
		c, err := ensureMountPoint(spec.Root, p, dir)
		created = append(created, c...)
		if err != nil {
			return fmt.Errorf("mount point %s: %w", target, err)
		}
		ops = append(ops, mountOp{Kind: kind, Source: source, Target: p, ReadOnly: ro})
		return nil
	}
	for _, k := range []string{mountProc, mountDev, mountSys} {
		if err := add(k, "", "/"+k, true, false); err != nil {
			return nil, created, err
		}
	}
	if spec.network() == NetworkHost {
		for _, f := range hostNetFiles {
			if _, err := os.Stat(f); err != nil {
				continue // nothing to share
			}
			if err := add(mountBind, f, f, false, true); err != nil {
				return nil, created, err
			}
		}
	}
	for _, m := range spec.Mounts {
		fi, err := os.Stat(m.Source)
		if err != nil {
			return nil, created, fmt.Errorf("%w: mount source: %v", ErrBadSpec, err)
		}
		if err := add(mountBind, m.Source, m.Target, fi.IsDir(), m.ReadOnly); err != nil {
			return nil, created, err
		}
	}
	return ops, created, nil
}

// ensureMountPoint makes p (under root, already resolved) a directory or a
// file to mount on, creating what is missing; it returns what it created.
func ensureMountPoint(root, p string, dir bool) ([]createdPath, error) {
	fi, err := os.Lstat(p)
	if err == nil {
		if fi.IsDir() != dir {
			return nil, fmt.Errorf("%s exists and is a %s", p, fi.Mode().Type())
		}
		return nil, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	var missing []string
	for d := filepath.Dir(p); len(d) > len(root); d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil {
			break
		}
		missing = append([]string{d}, missing...)
	}
	top := createdPath{top: true}
	parent := filepath.Dir(p)
	if len(missing) > 0 {
		parent = filepath.Dir(missing[0])
	}
	var st unix.Stat_t
	if err := unix.Stat(parent, &st); err != nil {
		return nil, err
	}
	top.times = [2]unix.Timespec{st.Atim, st.Mtim}
	var created []createdPath
	record := func(p string) {
		c := createdPath{path: p}
		if len(created) == 0 {
			c = top
			c.path = p
		}
		created = append(created, c)
	}
	for _, d := range missing {
		if err := os.Mkdir(d, 0o755); err != nil {
			return created, err
		}
		record(d)
	}
	if dir {
		err = os.Mkdir(p, 0o755)
	} else {
		var f *os.File
		if f, err = os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644); err == nil {
			err = f.Close()
		}
	}
	if err != nil {
		return created, err
	}
	record(p)
	return created, nil
}

// removeCreated removes the mount points planMounts created, children
// first, when they are still empty, and gives their parent back its times:
// the step leaves no trace of them but the parent's ctime.
func removeCreated(created []createdPath) {
	for i := len(created) - 1; i >= 0; i-- {
		c := created[i]
		fi, err := os.Lstat(c.path)
		if err != nil || (!fi.IsDir() && fi.Size() != 0) {
			continue
		}
		if os.Remove(c.path) != nil { // a directory the step filled stays
			continue
		}
		if c.top {
			_ = unix.UtimesNano(filepath.Dir(c.path), c.times[:])
		}
	}
}

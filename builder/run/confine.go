package run

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// What follows runs in the step's init, in its own mount namespace, before
// it pivots into the root.

// enforceNodev makes every mount at or under root nodev, except the
// device binds kiln puts in /dev (and its private devpts): a device node
// the step makes, or one an image or a bind source carries, can then be
// recorded in a layer but never opened.
func enforceNodev(root string, devices []string) error {
	// This thread's table: the init's other threads stay in kiln's mount
	// namespace when the init made its own with unshare.
	f, err := os.Open("/proc/thread-self/mountinfo")
	if err != nil {
		return fmt.Errorf("reading the mount table: %w", err)
	}
	defer f.Close()
	mounts, err := devMounts(f, root)
	if err != nil {
		return err
	}
	for _, m := range mounts {
		if slices.Contains(devices, m) {
			continue
		}
		if err := remount(m, unix.MS_NODEV); err != nil {
			return fmt.Errorf("making %s nodev: %w", m, err)
		}
	}
	return nil
}

// devMounts lists the mount points at or under root whose mount options
// lack nodev, in table order (parents before what is mounted on them).
func devMounts(r io.Reader, root string) ([]string, error) {
	entries, err := readMountinfo(r)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.point != root && !strings.HasPrefix(e.point, root+"/") {
			continue
		}
		if !slices.Contains(e.options, "nodev") && !slices.Contains(out, e.point) {
			out = append(out, e.point)
		}
	}
	return out, nil
}

// deviceBinds are the mount points of /dev under root whose devices a step
// may open.
func deviceBinds(ops []mountOp) []string {
	var out []string
	for _, op := range ops {
		if op.Kind != mountDev {
			continue
		}
		for _, name := range hostDevices {
			out = append(out, filepath.Join(op.Target, name))
		}
		out = append(out, filepath.Join(op.Target, "pts"))
	}
	return out
}

// maskSystemPaths hides runc's masked paths under root and makes its
// read-only ones read-only, as Docker does for every container.
func maskSystemPaths(root string) error {
	for _, p := range maskedPaths {
		if err := maskPath(filepath.Join(root, p)); err != nil {
			return fmt.Errorf("masking %s: %w", p, err)
		}
	}
	for _, p := range readonlyPaths {
		target := filepath.Join(root, p)
		if _, err := os.Lstat(target); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err := bind(target, target, true); err != nil {
			return fmt.Errorf("making %s read-only: %w", p, err)
		}
	}
	return nil
}

// maskPath covers a folder with an empty read-only tmpfs and a file with
// /dev/null, as runc does; a path the kernel does not have is left alone.
func maskPath(target string) error {
	fi, err := os.Lstat(target)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return unix.Mount("tmpfs", target, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
	}
	return unix.Mount("/dev/null", target, "", unix.MS_BIND, "")
}

// setRlimits applies the step's resource limits to the init, which the
// command inherits across exec.
func setRlimits(limits []Rlimit) error {
	for _, l := range limits {
		if err := unix.Setrlimit(l.Resource, &unix.Rlimit{Cur: l.Soft, Max: l.Hard}); err != nil {
			return fmt.Errorf("ulimit %s=%d:%d: %w", l.Name, l.Soft, l.Hard, err)
		}
	}
	return nil
}

package run

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// hostDevices are bound from the host's /dev into the step's /dev.
var hostDevices = [...]string{"null", "zero", "full", "random", "urandom", "tty"}

// devLinks are the symlinks of a minimal /dev.
var devLinks = [...][2]string{
	{"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"},
	{"/proc/self/fd/2", "stderr"}, {"pts/ptmx", "ptmx"},
}

func (m mountOp) apply() error {
	var err error
	switch m.Kind {
	case mountProc:
		err = unix.Mount("proc", m.Target, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
	case mountDev:
		err = mountDevTree(m.Target)
	case mountSys:
		err = mountSysfs(m.Target)
	case mountBind:
		err = bind(m.Source, m.Target, m.ReadOnly)
	default:
		err = fmt.Errorf("unknown kind %q", m.Kind)
	}
	if err != nil {
		return fmt.Errorf("mounting %s on %s: %w", m.Kind, m.Target, err)
	}
	return nil
}

// mountDevTree builds a minimal /dev on a fresh tmpfs. The tmpfs is nodev:
// a node the step makes there cannot be opened; the few devices a step may
// use are binds of the host's, which keep their own mount's flags.
func mountDevTree(dev string) error {
	if err := unix.Mount("tmpfs", dev, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_STRICTATIME, "mode=755,size=65536k"); err != nil {
		return err
	}
	for _, name := range hostDevices {
		src := "/dev/" + name
		if _, err := os.Stat(src); err != nil {
			continue
		}
		dst := filepath.Join(dev, name)
		if err := os.WriteFile(dst, nil, 0o666); err != nil {
			return err
		}
		if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("binding %s: %w", src, err)
		}
	}
	pts := filepath.Join(dev, "pts")
	if err := os.Mkdir(pts, 0o755); err != nil {
		return err
	}
	// A private devpts instance: the host's own terminals stay out of
	// reach. Where one cannot be mounted the step has no terminals.
	_ = unix.Mount("devpts", pts, "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620")
	shm := filepath.Join(dev, "shm")
	if err := os.Mkdir(shm, 0o1777); err != nil {
		return err
	}
	if err := unix.Mount("shm", shm, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=1777,size=65536k"); err != nil {
		return fmt.Errorf("shm: %w", err)
	}
	for _, l := range devLinks {
		if err := os.Symlink(l[0], filepath.Join(dev, l[1])); err != nil {
			return err
		}
	}
	return nil
}

// mountSysfs mounts a read-only sysfs, or, where a fresh one is refused (a
// user namespace sharing the host network), a read-only bind of /sys.
func mountSysfs(target string) error {
	flags := uintptr(unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
	if err := unix.Mount("sysfs", target, "sysfs", flags, ""); err == nil {
		return nil
	}
	return bind("/sys", target, true)
}

// bind mounts source on target, recursively, and remounts it read-only if
// asked.
func bind(source, target string, ro bool) error {
	if err := unix.Mount(source, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return err
	}
	if !ro {
		return nil
	}
	if err := remount(target, unix.MS_RDONLY); err != nil {
		return fmt.Errorf("remounting read-only: %w", err)
	}
	return nil
}

// remount adds flags (MS_RDONLY, MS_NODEV) to the bind mount on target,
// keeping the flags it has: a user namespace may not clear those of a
// mount it inherited.
func remount(target string, add uintptr) error {
	var st unix.Statfs_t
	if err := unix.Statfs(target, &st); err != nil {
		return err
	}
	flags := unix.MS_BIND | unix.MS_REMOUNT | add
	for _, f := range [...][2]uintptr{
		{unix.ST_RDONLY, unix.MS_RDONLY},
		{unix.ST_NOSUID, unix.MS_NOSUID}, {unix.ST_NODEV, unix.MS_NODEV}, {unix.ST_NOEXEC, unix.MS_NOEXEC},
		{unix.ST_NOATIME, unix.MS_NOATIME}, {unix.ST_NODIRATIME, unix.MS_NODIRATIME}, {unix.ST_RELATIME, unix.MS_RELATIME},
	} {
		if uintptr(st.Flags)&f[0] != 0 {
			flags |= f[1]
		}
	}
	return unix.Mount("", target, "", flags, "")
}

package run

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"kiln/builder/run/seccomp"
)

// init takes over a process started as a step's init (or the probe) as
// soon as this package and its imports are initialized, before the
// packages that do not depend on it: a build re-executes this program for
// every RUN step, and initializing all of kiln (Kubernetes' client, the
// registry and git clients, their regexps and type registries) took about
// two thirds of a trivial step's time.
func init() {
	if os.Getenv(envMarker) != "" {
		runtime.MemProfileRate = 0 // an init profiles nothing: no sampling of its allocations
	}
	MaybeInit()
}

// MaybeInit must be the first call in main (and in TestMain of tests that
// use Run or Detect). In a process started by Run as the step's init it sets
// up the root and execs the command, never returning; elsewhere it returns
// at once. The package's init function calls it already, earlier than main
// can; the call in main stays as the documented entry point.
func MaybeInit() {
	switch os.Getenv(envMarker) {
	case "":
		dieWithParent()
		return
	case stageProbe:
		probeMounts(false)
	case stageProbeChroot:
		probeMounts(true)
	case stageMap:
		reexecMapped()
	case stageUserNS:
		reexecInUserNS()
	case stageInit:
		initStep(false)
	case stageChroot:
		initStep(true)
	}
	fmt.Fprintf(os.Stderr, "kiln: unknown %s value %q\n", envMarker, os.Getenv(envMarker))
	os.Exit(125)
}

// probeMounts tries, in the probe's namespaces, the mounts a step needs
// first: namespaces a security profile forbids to mount in are no use. With
// unshare it first makes its mount namespace, as a chroot step's init does.
func probeMounts(unshare bool) {
	if unshare {
		runtime.LockOSThread() // the new mount namespace is this thread's
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			fmt.Fprintf(os.Stderr, "making a mount namespace: %v", err)
			os.Exit(1)
		}
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		fmt.Fprintf(os.Stderr, "making mounts private: %v", err)
		os.Exit(1)
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		fmt.Fprintf(os.Stderr, "mounting proc: %v", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// reexecMapped waits until the parent has written the id maps, then execs
// the program again: exec grants capabilities in a user namespace only to
// uid 0, which this process was not yet when it was started.
func reexecMapped() {
	gate := make([]byte, 1)
	if _, err := io.ReadFull(os.NewFile(fdConfig, "config"), gate); err != nil {
		initFail("waiting for the id maps", err)
	}
	err := syscall.Exec("/proc/self/exe", []string{"kiln-run-init"}, []string{envMarker + "=" + stageInit})
	initFail("re-executing in the user namespace", err)
}

// initStep runs in the new namespaces: mounts, pivot, credentials, exec.
// With unshare (chroot mode) it first makes the step's mount namespace, and
// its network namespace when the step has its own: a copy of kiln's mounts
// as they are when the step starts, the step's root among them.
func initStep(unshare bool) {
	// prctl, the bounding set and the namespaces unshare makes are this
	// thread's: the one that execs the command.
	runtime.LockOSThread()
	unix.CloseOnExec(fdConfig)
	unix.CloseOnExec(fdStatus)
	var cfg initConfig
	if err := json.NewDecoder(os.NewFile(fdConfig, "config")).Decode(&cfg); err != nil {
		initFail("reading the step", err)
	}
	if unshare {
		flags := unix.CLONE_NEWNS
		if cfg.Loopback {
			flags |= unix.CLONE_NEWNET
		}
		// Nothing is mounted before this succeeds: a failure ends the init.
		if err := unix.Unshare(flags); err != nil {
			initFail("making the step's namespaces", err)
		}
	}
	if err := setupRoot(&cfg); err != nil {
		initFail("preparing the root", err)
	}
	if cfg.Hostname != "" {
		if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
			initFail("setting the hostname", err)
		}
	}
	if cfg.Loopback {
		if err := loopbackUp(); err != nil {
			initFail("bringing up lo", err)
		}
	}
	dir := cfg.Dir
	if dir == "" {
		dir = "/"
	}
	if err := unix.Chdir(dir); err != nil {
		initFail("working directory "+dir, err)
	}
	prog, err := lookPath(cfg.Args[0], cfg.Env, dir)
	if err != nil {
		initFail("finding the command", err)
	}
	if err := setRlimits(cfg.Rlimits); err != nil {
		initFail("setting limits", err)
	}
	if err := becomeUser(&cfg); err != nil {
		initFail("switching user", err)
	}
	err = unix.Exec(prog, cfg.Args, cfg.Env)
	initFail("executing "+prog, err)
}

// initFail reports a setup failure to the parent and exits.
func initFail(what string, err error) {
	status := os.NewFile(fdStatus, "status")
	fmt.Fprintf(status, "%s: %v", what, err)
	os.Exit(125)
}

// setupRoot mounts what the step sees and makes the root its "/".
func setupRoot(cfg *initConfig) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making mounts private: %w", err)
	}
	// pivot_root wants the new root to be a mount point.
	if err := unix.Mount(cfg.Root, cfg.Root, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("binding %s: %w", cfg.Root, err)
	}
	for _, m := range cfg.Mounts {
		if err := m.apply(); err != nil {
			return err
		}
	}
	if err := enforceNodev(cfg.Root, deviceBinds(cfg.Mounts)); err != nil {
		return err
	}
	if cfg.MaskPaths {
		if err := maskSystemPaths(cfg.Root); err != nil {
			return err
		}
	}
	return enterRoot(cfg.Root)
}

// enterRoot pivots into root and detaches the old root; where pivot_root
// cannot work (a root on the initramfs) it falls back to chroot.
func enterRoot(root string) error {
	if err := unix.Chdir(root); err != nil {
		return fmt.Errorf("entering %s: %w", root, err)
	}
	if err := unix.PivotRoot(".", "."); err == nil {
		if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
			return fmt.Errorf("detaching the host root: %w", err)
		}
	} else if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot %s: %w", root, err)
	}
	return unix.Chdir("/")
}

// becomeUser drops to the step's user and, as root in the chroot mode, to
// Docker's default capability bounding set.
func becomeUser(cfg *initConfig) error {
	if cfg.DropCaps {
		if err := dropCapabilities(); err != nil {
			return err
		}
	}
	// The filter goes on while the init still has CAP_SYS_ADMIN, so no
	// no_new_privs is needed (setuid programs in the image keep working,
	// as in Docker); the calls left to make (setgroups, setgid, setuid,
	// prctl, execve) are all allowed by it.
	if len(cfg.Seccomp) > 0 {
		if err := seccomp.Install(cfg.Seccomp); err != nil {
			return fmt.Errorf("installing the seccomp filter: %w", err)
		}
	}
	// This thread's credentials alone: it execs the command next, and exec
	// ends the others. (syscall.Setuid and friends change every thread of
	// the runtime, one signal and wake-up each: up to 10 ms a step on a
	// busy machine.)
	if cfg.SetGroups {
		if err := setThreadGroups(cfg.Groups); err != nil {
			return fmt.Errorf("setgroups %v: %w", cfg.Groups, err)
		}
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(cfg.GID), uintptr(cfg.GID), uintptr(cfg.GID)); e != 0 {
		return fmt.Errorf("setgid %d: %w", cfg.GID, e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(cfg.UID), uintptr(cfg.UID), uintptr(cfg.UID)); e != 0 {
		return fmt.Errorf("setuid %d: %w", cfg.UID, e)
	}
	// A change of credentials clears the parent-death signal.
	return unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0)
}

// setThreadGroups sets the calling thread's supplementary groups.
func setThreadGroups(groups []uint32) error {
	var p unsafe.Pointer
	if len(groups) > 0 {
		p = unsafe.Pointer(&groups[0])
	}
	_, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(groups)), uintptr(p), 0)
	runtime.KeepAlive(groups)
	if e != 0 {
		return e
	}
	return nil
}

// defaultCaps are the capabilities Docker grants a container by default.
var defaultCaps = map[int]bool{
	unix.CAP_CHOWN: true, unix.CAP_DAC_OVERRIDE: true, unix.CAP_FOWNER: true, unix.CAP_FSETID: true,
	unix.CAP_KILL: true, unix.CAP_SETGID: true, unix.CAP_SETUID: true, unix.CAP_SETPCAP: true,
	unix.CAP_NET_BIND_SERVICE: true, unix.CAP_NET_RAW: true, unix.CAP_SYS_CHROOT: true,
	unix.CAP_MKNOD: true, unix.CAP_AUDIT_WRITE: true, unix.CAP_SETFCAP: true,
}

func dropCapabilities() error {
	for c := 0; c <= unix.CAP_LAST_CAP; c++ {
		if defaultCaps[c] {
			continue
		}
		err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0)
		if err != nil && err != unix.EINVAL { // EINVAL: a capability this kernel lacks
			return fmt.Errorf("dropping capability %d: %w", c, err)
		}
	}
	return nil
}

// loopbackUp sets IFF_UP on lo in the step's fresh network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

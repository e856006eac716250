package run

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"kiln/builder/run/seccomp"
)

// DefaultPidsLimit is the most processes (threads included) a step may
// have at once where a pids cgroup can be made: enough for a parallel
// compile, far too few for a fork bomb to starve the host.
const DefaultPidsLimit = 4096

// Security is what confines a step beyond its namespaces, in chroot and
// rootless isolation; container isolation leaves all of it to the
// container runtime (the pod's seccompProfile, masked paths and pids
// limit). Its zero value is the safe default, Docker's: moby's default
// seccomp profile, runc's masked and read-only /proc and /sys paths and
// DefaultPidsLimit.
type Security struct {
	// Seccomp is the compiled syscall filter; nil is moby's default
	// profile, compiled for each step (see SeccompFilter to do it once).
	Seccomp []unix.SockFilter
	// SeccompUnconfined runs the step with no syscall filter (Docker's
	// --security-opt seccomp=unconfined).
	SeccompUnconfined bool
	// SystemPathsUnconfined leaves /proc and /sys unmasked and writable
	// where the kernel lets them be (Docker's systempaths=unconfined).
	SystemPathsUnconfined bool
	// PidsLimit bounds the step's processes; 0 is DefaultPidsLimit, -1 no
	// limit.
	PidsLimit int64
	// Rlimits are set in the step before its command starts.
	Rlimits []Rlimit
}

// EffectivePidsLimit is PidsLimit with the default applied: -1 for none.
func (s Security) EffectivePidsLimit() int64 {
	if s.PidsLimit == 0 {
		return DefaultPidsLimit
	}
	return s.PidsLimit
}

// maskedPaths are hidden from a step, as runc's default spec (and so
// Docker) hides them: a folder under an empty read-only tmpfs, a file
// under /dev/null. They expose host state (kernel memory, keys, timers of
// every process) or let a process poke hardware.
var maskedPaths = [...]string{
	"/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
	"/proc/sched_debug", "/proc/scsi", "/proc/timer_list", "/proc/timer_stats",
	"/sys/devices/virtual/powercap", "/sys/firmware",
}

// readonlyPaths are read-only in a step, as in runc's default spec:
// writing them changes the host kernel (/proc/sys/kernel/core_pattern runs
// a program as root on the host).
var readonlyPaths = [...]string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}

// Rlimit is one resource limit, as setrlimit(2) takes it.
type Rlimit struct {
	Resource   int    // unix.RLIMIT_*
	Name       string // "nofile", for messages
	Soft, Hard uint64
}

// rlimitNames are the --ulimit names Docker accepts.
var rlimitNames = map[string]int{
	"core": unix.RLIMIT_CORE, "cpu": unix.RLIMIT_CPU, "data": unix.RLIMIT_DATA, "fsize": unix.RLIMIT_FSIZE,
	"locks": unix.RLIMIT_LOCKS, "memlock": unix.RLIMIT_MEMLOCK, "msgqueue": unix.RLIMIT_MSGQUEUE,
	"nice": unix.RLIMIT_NICE, "nofile": unix.RLIMIT_NOFILE, "nproc": unix.RLIMIT_NPROC, "rss": unix.RLIMIT_RSS,
	"rtprio": unix.RLIMIT_RTPRIO, "rttime": unix.RLIMIT_RTTIME, "sigpending": unix.RLIMIT_SIGPENDING,
	"stack": unix.RLIMIT_STACK, "as": unix.RLIMIT_AS,
}

// ParseUlimit reads Docker's --ulimit form NAME=SOFT[:HARD], where a value
// is a number, -1 or "unlimited"; HARD defaults to SOFT.
func ParseUlimit(s string) (Rlimit, error) {
	name, val, ok := strings.Cut(s, "=")
	res, known := rlimitNames[strings.ToLower(name)]
	switch {
	case !ok:
		return Rlimit{}, fmt.Errorf("ulimit %q: want NAME=SOFT[:HARD], e.g. nofile=1024:4096", s)
	case !known:
		return Rlimit{}, fmt.Errorf("ulimit %q: unknown name %q (want one of core, cpu, data, fsize, locks, memlock, msgqueue, nice, nofile, nproc, rss, rtprio, rttime, sigpending, stack, as)", s, name)
	}
	softS, hardS, hasHard := strings.Cut(val, ":")
	soft, err := rlimitValue(softS)
	if err != nil {
		return Rlimit{}, fmt.Errorf("ulimit %q: soft limit: %w", s, err)
	}
	hard := soft
	if hasHard {
		if hard, err = rlimitValue(hardS); err != nil {
			return Rlimit{}, fmt.Errorf("ulimit %q: hard limit: %w", s, err)
		}
	}
	if soft > hard {
		return Rlimit{}, fmt.Errorf("ulimit %q: soft limit %s is above the hard limit %s", s, softS, hardS)
	}
	return Rlimit{Resource: res, Name: strings.ToLower(name), Soft: soft, Hard: hard}, nil
}

func rlimitValue(s string) (uint64, error) {
	if s == "unlimited" || s == "-1" {
		return unix.RLIM_INFINITY, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number, -1 or unlimited", s)
	}
	return n, nil
}

// dockerCaps are the capabilities of a Docker container (defaultCaps by
// name): moby's default profile allows more syscalls to a container with
// more of them (CAP_SYS_ADMIN: mount, unshare, ...), and a step has none
// beyond these.
var dockerCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID",
	"CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SYS_CHROOT", "CAP_MKNOD", "CAP_AUDIT_WRITE",
	"CAP_SETFCAP",
}

// DefaultSeccomp compiles moby's default seccomp profile for this machine
// (its architecture and kernel, Docker's default capabilities). Compile it
// once per build and hand it to every step in Security.Seccomp.
func DefaultSeccomp() ([]unix.SockFilter, error) {
	p, err := seccomp.Default(dockerCaps)
	if err == nil {
		var prog []unix.SockFilter
		if prog, err = seccomp.Compile(p); err == nil {
			return prog, nil
		}
	}
	if errors.Is(err, seccomp.ErrUnsupportedArch) {
		return nil, fmt.Errorf("seccomp: the default profile: %w (run with --security-opt seccomp=unconfined to build without a filter)", err)
	}
	return nil, fmt.Errorf("seccomp: the default profile: %w", err)
}

// LoadSeccomp compiles a seccomp profile file in Docker's JSON format, as
// --security-opt seccomp=FILE gives it.
func LoadSeccomp(file string) ([]unix.SockFilter, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	p, err := seccomp.Load(b, dockerCaps)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if p == nil { // Docker reads a profile with no rules as "no filter"; kiln wants that said plainly
		return nil, fmt.Errorf("%s: the profile has no defaultAction and no syscalls (for no filter, say seccomp=unconfined)", file)
	}
	prog, err := seccomp.Compile(p)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return prog, nil
}

// filter is the step's compiled seccomp filter; nil when unconfined.
func (s Security) filter() ([]unix.SockFilter, error) {
	switch {
	case s.SeccompUnconfined:
		return nil, nil
	case s.Seccomp != nil:
		return s.Seccomp, nil
	}
	return DefaultSeccomp()
}

// stepCgroup makes the step's pids cgroup, or returns nil: no limit asked,
// or none can be made here (CheckPidsLimit says why, once per build).
func stepCgroup(spec Spec) *pidsCgroup {
	limit := spec.Security.EffectivePidsLimit()
	if limit < 0 {
		return nil
	}
	cg, err := newPidsCgroup(limit)
	if err != nil {
		logger(spec).Debug("RUN without a pids cgroup", "reason", err)
		return nil
	}
	return cg
}

// CheckPidsLimit tells whether Run can bound a step's processes on this
// machine: nil, or why not (worth a warning once per build; only a pids
// cgroup bounds root, RLIMIT_NPROC does not).
func CheckPidsLimit() error {
	cg, err := newPidsCgroup(1)
	if err != nil {
		return err
	}
	cg.remove()
	return nil
}

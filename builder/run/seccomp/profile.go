package seccomp

import (
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"

	moby "github.com/moby/profiles/seccomp"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Default returns moby's default profile (Docker's) for runtime.GOARCH, a
// process whose capability bounding set is caps ("CAP_CHOWN", …; the
// "CAP_" prefix may be left out) and the running kernel.
func Default(caps []string) (*Profile, error) {
	kernel, err := hostKernel()
	if err != nil {
		return nil, err
	}
	return defaultFor(runtime.GOARCH, caps, kernel)
}

func defaultFor(goarch string, caps []string, kernel moby.KernelVersion) (*Profile, error) {
	return filter(moby.DefaultProfile(), goarch, caps, kernel)
}

// Load reads a profile file in Docker's format (--security-opt
// seccomp=FILE) and filters it as Default filters moby's. A profile with
// neither defaultAction nor syscalls is Docker's way to turn the filter off:
// Load returns nil and no error for it. Errors name what is wrong.
func Load(jsonBody []byte, caps []string) (*Profile, error) {
	var cfg moby.Seccomp
	if err := json.Unmarshal(jsonBody, &cfg); err != nil {
		return nil, fmt.Errorf("seccomp profile: %w", err)
	}
	kernel, err := hostKernel()
	if err != nil {
		return nil, err
	}
	p, err := filter(&cfg, runtime.GOARCH, caps, kernel)
	if err != nil || p == nil {
		return nil, err
	}
	if _, err := parse(p); err != nil {
		return nil, err
	}
	return p, nil
}

// filter does what moby's setupSeccomp does for the daemon: it expands the
// archMap entry of goarch and keeps the syscall rules whose includes and
// excludes match goarch, caps and the kernel. It is written again here
// because moby's works for runtime.GOARCH and the host kernel only; it does
// not change cfg.
func filter(cfg *moby.Seccomp, goarch string, caps []string, kernel moby.KernelVersion) (*Profile, error) {
	nat, ok := natives[goarch]
	switch {
	case !ok:
		return nil, fmt.Errorf("%w: %s", ErrUnsupportedArch, goarch)
	case cfg.DefaultAction == "" && len(cfg.Syscalls) == 0:
		return nil, nil
	case len(cfg.Architectures) != 0 && len(cfg.ArchMap) != 0:
		return nil, errors.New("seccomp profile: both architectures and archMap are set, use one")
	case len(cfg.LinuxSeccomp.Syscalls) != 0:
		return nil, errors.New("seccomp profile: LinuxSeccomp.Syscalls is set, use Seccomp.Syscalls")
	}
	caps = normalizeCaps(caps)
	p := cfg.LinuxSeccomp
	p.Architectures, p.Syscalls = slices.Clone(cfg.Architectures), nil
	for _, a := range cfg.ArchMap {
		if a.Arch == nat.abis[0] {
			p.Architectures = append(append(p.Architectures, a.Arch), a.SubArches...)
			break
		}
	}
	for i, call := range cfg.Syscalls {
		if call == nil {
			return nil, fmt.Errorf("seccomp profile: syscalls[%d] is null", i)
		}
		sc := call.LinuxSyscall
		if call.Name != "" {
			if len(call.Names) != 0 {
				return nil, fmt.Errorf("seccomp profile: syscall %q: both name and names are set, use one", call.Name)
			}
			sc.Names = []string{call.Name}
		}
		if applies(call, nat.mobyName, caps, kernel) {
			p.Syscalls = append(p.Syscalls, sc)
		}
	}
	return &p, nil
}

// applies reports whether call's excludes all miss and its includes all
// match: any excluded cap held, or any included cap missing, drops it.
func applies(call *moby.Syscall, goarch string, caps []string, kernel moby.KernelVersion) bool {
	if ex := call.Excludes; ex != nil {
		if slices.Contains(ex.Arches, goarch) || slices.ContainsFunc(ex.Caps, func(c string) bool { return slices.Contains(caps, c) }) {
			return false
		}
		if ex.MinKernel != nil && kernelAtLeast(kernel, *ex.MinKernel) {
			return false
		}
	}
	if in := call.Includes; in != nil {
		if len(in.Arches) > 0 && !slices.Contains(in.Arches, goarch) {
			return false
		}
		if slices.ContainsFunc(in.Caps, func(c string) bool { return !slices.Contains(caps, c) }) {
			return false
		}
		if in.MinKernel != nil && !kernelAtLeast(kernel, *in.MinKernel) {
			return false
		}
	}
	return true
}

// normalizeCaps writes capability names as moby's profile does:
// "CAP_SYS_ADMIN".
func normalizeCaps(caps []string) []string {
	out := make([]string, len(caps))
	for i, c := range caps {
		c = strings.ToUpper(c)
		if !strings.HasPrefix(c, "CAP_") {
			c = "CAP_" + c
		}
		out[i] = c
	}
	return out
}

func kernelAtLeast(k, min moby.KernelVersion) bool {
	return k.Kernel > min.Kernel || (k.Kernel == min.Kernel && k.Major >= min.Major)
}

// hostKernel is the running kernel's version, as moby compares it: the
// first two numbers of the release.
func hostKernel() (moby.KernelVersion, error) {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return moby.KernelVersion{}, fmt.Errorf("seccomp profile: kernel version: %w", err)
	}
	release := unix.ByteSliceToString(uts.Release[:])
	var k moby.KernelVersion
	if _, err := fmt.Sscanf(release, "%d.%d", &k.Kernel, &k.Major); err != nil {
		return moby.KernelVersion{}, fmt.Errorf("seccomp profile: kernel version %q: %w", release, err)
	}
	return k, nil
}

// policy is a profile checked and reduced to seccomp return values and
// argument conditions, before it meets any ABI's syscall table.
type policy struct {
	def   uint32
	archs []specs.Arch
	rules []rule
}

// rule is one entry of the profile's syscalls: the calls it names get ret
// when any of alts holds entirely; alts is nil for a rule without args.
type rule struct {
	names []string
	ret   uint32
	alts  [][]cond
}

// cond is one argument comparison (LinuxSeccompArg, checked).
type cond struct {
	index         uint
	op            specs.LinuxSeccompOperator
	value, value2 uint64
}

// parse checks p and reduces it to a policy.
func parse(p *Profile) (policy, error) {
	if p == nil {
		return policy{}, errors.New("seccomp profile: none given")
	}
	def, err := retValue(p.DefaultAction, p.DefaultErrnoRet, nil)
	if err != nil {
		return policy{}, fmt.Errorf("seccomp profile: defaultAction: %w", err)
	}
	for _, a := range p.Architectures {
		if !slices.Contains(knownArches, a) {
			return policy{}, fmt.Errorf("seccomp profile: unknown architecture %q", a)
		}
	}
	pol := policy{def: def, archs: p.Architectures}
	for i, sc := range p.Syscalls {
		if len(sc.Names) == 0 {
			return policy{}, fmt.Errorf("seccomp profile: syscalls[%d] names no syscall", i)
		}
		r, err := parseRule(sc, p.DefaultErrnoRet)
		if err != nil {
			return policy{}, fmt.Errorf("seccomp profile: syscall %q: %w", sc.Names[0], err)
		}
		pol.rules = append(pol.rules, r)
	}
	return pol, nil
}

func parseRule(sc specs.LinuxSyscall, defErrno *uint) (rule, error) {
	ret, err := retValue(sc.Action, sc.ErrnoRet, defErrno)
	if err != nil {
		return rule{}, err
	}
	r := rule{names: sc.Names, ret: ret}
	if len(sc.Args) == 0 {
		return r, nil
	}
	conds := make([]cond, len(sc.Args))
	seen := map[uint]bool{}
	repeated := false
	for i, a := range sc.Args {
		if a.Index >= 6 {
			return rule{}, fmt.Errorf("argument index %d: a syscall has 6 arguments (0 to 5)", a.Index)
		}
		if !slices.Contains(knownOps, a.Op) {
			return rule{}, fmt.Errorf("argument %d: unknown operator %q", a.Index, a.Op)
		}
		conds[i] = cond{index: a.Index, op: a.Op, value: a.Value, value2: a.ValueTwo}
		repeated = repeated || seen[a.Index]
		seen[a.Index] = true
	}
	if !repeated {
		r.alts = [][]cond{conds}
		return r, nil
	}
	// libseccomp takes one comparison per argument in a rule, so runc adds
	// each comparison of such a rule as a rule of its own: any one of them
	// suffices (runc issue 2735). Docker's users get that, so do ours.
	for _, c := range conds {
		r.alts = append(r.alts, []cond{c})
	}
	return r, nil
}

// retValue is the seccomp return value of an action.
func retValue(act specs.LinuxSeccompAction, errno, defErrno *uint) (uint32, error) {
	switch act {
	case specs.ActAllow:
		return unix.SECCOMP_RET_ALLOW, nil
	case specs.ActErrno, specs.ActTrace:
		data, err := errnoData(errno, defErrno)
		if act == specs.ActTrace {
			return unix.SECCOMP_RET_TRACE | data, err
		}
		return unix.SECCOMP_RET_ERRNO | data, err
	case specs.ActKill, specs.ActKillThread:
		return unix.SECCOMP_RET_KILL_THREAD, nil
	case specs.ActKillProcess:
		return unix.SECCOMP_RET_KILL_PROCESS, nil
	case specs.ActTrap:
		return unix.SECCOMP_RET_TRAP, nil
	case specs.ActLog:
		return unix.SECCOMP_RET_LOG, nil
	case specs.ActNotify:
		return 0, errors.New("SCMP_ACT_NOTIFY is not supported (it needs a listener)")
	case "":
		return 0, errors.New("no action")
	}
	return 0, fmt.Errorf("unknown action %q", act)
}

// errnoData is the errno of an ERRNO action (or TRACE's message): the
// rule's, else the profile's default one, else EPERM.
func errnoData(errno, defErrno *uint) (uint32, error) {
	data := uint(unix.EPERM)
	switch {
	case errno != nil:
		data = *errno
	case defErrno != nil:
		data = *defErrno
	}
	if data > unix.SECCOMP_RET_DATA {
		return 0, fmt.Errorf("errno %d does not fit the 16 bits seccomp returns", data)
	}
	return uint32(data), nil
}

// knownOps are the comparison operators of runtime-spec (and libseccomp).
var knownOps = []specs.LinuxSeccompOperator{
	specs.OpNotEqual, specs.OpLessThan, specs.OpLessEqual, specs.OpEqualTo,
	specs.OpGreaterEqual, specs.OpGreaterThan, specs.OpMaskedEqual,
}

// knownArches are the architecture names a profile may list; those without
// a syscall table here are accepted and left out of the filter.
var knownArches = []specs.Arch{
	specs.ArchX86, specs.ArchX86_64, specs.ArchX32, specs.ArchARM, specs.ArchAARCH64,
	specs.ArchMIPS, specs.ArchMIPS64, specs.ArchMIPS64N32, specs.ArchMIPSEL, specs.ArchMIPSEL64,
	specs.ArchMIPSEL64N32, specs.ArchPPC, specs.ArchPPC64, specs.ArchPPC64LE, specs.ArchS390,
	specs.ArchS390X, specs.ArchPARISC, specs.ArchPARISC64, specs.ArchRISCV64, specs.ArchLOONGARCH64,
	specs.ArchM68K, specs.ArchSH, specs.ArchSHEB,
}

package seccomp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	moby "github.com/moby/profiles/seccomp"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// dockerCaps is Docker's default capability bounding set.
var dockerCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
	"CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// testKernel is new enough for every minKernel of moby's profile, so the
// tests do not depend on the machine's kernel.
var testKernel = moby.KernelVersion{Kernel: 6, Major: 8}

const (
	allow       = unix.SECCOMP_RET_ALLOW
	eperm       = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
	enosys      = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
	killProcess = unix.SECCOMP_RET_KILL_PROCESS
	x32Bit      = 0x40000000
)

// filterVM runs a compiled program in x/net/bpf's interpreter.
type filterVM struct {
	t  *testing.T
	vm *bpf.VM
}

func newFilterVM(t *testing.T, prog []unix.SockFilter) filterVM {
	t.Helper()
	insns := make([]bpf.Instruction, len(prog))
	for i, f := range prog {
		insns[i] = bpf.RawInstruction{Op: f.Code, Jt: f.Jt, Jf: f.Jf, K: f.K}.Disassemble()
	}
	vm, err := bpf.NewVM(insns)
	if err != nil {
		t.Fatalf("bpf.NewVM: %v", err)
	}
	return filterVM{t, vm}
}

// run presents a call as the kernel's seccomp_data. The VM loads 32-bit
// words big-endian, the kernel in the machine's (little-endian) order: each
// 32-bit field is written big-endian where the kernel has it.
func (f filterVM) run(audit, nr uint32, args [6]uint64) uint32 {
	f.t.Helper()
	var data [64]byte
	binary.BigEndian.PutUint32(data[offNr:], nr)
	binary.BigEndian.PutUint32(data[offArch:], audit)
	for i, a := range args {
		binary.BigEndian.PutUint32(data[offArgs+8*i:], uint32(a))
		binary.BigEndian.PutUint32(data[offArgs+8*i+4:], uint32(a>>32))
	}
	ret, err := f.vm.Run(data[:])
	if err != nil {
		f.t.Fatalf("running the filter: %v", err)
	}
	return uint32(ret)
}

// nr is the number of name in ABI a, with x32's bit.
func nr(t *testing.T, a specs.Arch, name string) uint32 {
	t.Helper()
	n, ok := syscallNumbers(abis[a].table)[name]
	if !ok {
		t.Fatalf("no syscall %q in %s", name, a)
	}
	return abis[a].nrBase + n
}

func compileDefault(t *testing.T, goarch string) (*Profile, filterVM) {
	t.Helper()
	p, err := defaultFor(goarch, dockerCaps, testKernel)
	if err != nil {
		t.Fatal(err)
	}
	prog, err := compileFor(p, goarch)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %d instructions", goarch, len(prog))
	return p, newFilterVM(t, prog)
}

type call struct {
	abi  specs.Arch
	name string
	nr   uint32 // when name is ""
	args [6]uint64
	want uint32
}

func (c call) String() string {
	if c.name == "" {
		return fmt.Sprintf("%s %#x", c.abi, c.nr)
	}
	return fmt.Sprintf("%s %s", c.abi, c.name)
}

const threadFlags = unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND | unix.CLONE_THREAD |
	unix.CLONE_SYSVSEM | unix.CLONE_SETTLS | unix.CLONE_PARENT_SETTID | unix.CLONE_CHILD_CLEARTID

// commonCalls hold for moby's default profile on every architecture, in
// its native ABI.
func commonCalls(native specs.Arch) []call {
	calls := []call{
		{name: "clone", args: [6]uint64{threadFlags}, want: allow},
		{name: "clone", args: [6]uint64{uint64(unix.SIGCHLD)}, want: allow},
		{name: "clone", args: [6]uint64{1<<32 | threadFlags}, want: allow}, // only the CLONE_NEW* bits count
		{name: "clone", args: [6]uint64{unix.CLONE_NEWUSER | uint64(unix.SIGCHLD)}, want: eperm},
		{name: "clone", args: [6]uint64{unix.CLONE_NEWNS | threadFlags}, want: eperm},
		{name: "clone3", want: enosys},
		{name: "personality", args: [6]uint64{0}, want: allow},
		{name: "personality", args: [6]uint64{8}, want: allow},
		{name: "personality", args: [6]uint64{0x20008}, want: allow},
		{name: "personality", args: [6]uint64{0xffffffff}, want: allow},
		{name: "personality", args: [6]uint64{0x0400000}, want: eperm}, // READ_IMPLIES_EXEC
		{name: "personality", args: [6]uint64{1 << 32}, want: eperm},   // 64-bit comparison
		{name: "socket", args: [6]uint64{unix.AF_UNIX}, want: allow},
		{name: "socket", args: [6]uint64{unix.AF_INET}, want: allow},
		{name: "socket", args: [6]uint64{unix.AF_INET6}, want: allow},
		{name: "socket", args: [6]uint64{unix.AF_NETLINK}, want: allow},
		{name: "socket", args: [6]uint64{unix.AF_VSOCK}, want: eperm},
		{name: "socket", args: [6]uint64{unix.AF_ALG}, want: eperm},
		{name: "socket", args: [6]uint64{1<<32 | unix.AF_INET}, want: eperm},
		{name: "socket", args: [6]uint64{unix.AF_MAX}, want: eperm},
		// Numbers above every call the profile names are newer than it:
		// ENOSYS, so that a C library falls back to an older call.
		{nr: 0x3fffffff, want: enosys},
		{nr: 0xffffffff, want: enosys},
		{nr: 100000, want: enosys},
	}
	for _, name := range []string{"read", "write", "openat", "execve", "mknodat", "chroot", "ptrace", "getpid", "seccomp", "prctl"} {
		calls = append(calls, call{name: name, want: allow})
	}
	for _, name := range []string{
		"keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd", "kexec_load",
		"open_by_handle_at", "init_module", "finit_module", "delete_module", "mount", "umount2", "unshare",
		"setns", "pivot_root", "reboot", "io_uring_setup", "fsopen", "move_mount", "open_tree", "swapon",
		"settimeofday", "acct", "syslog", "vhangup", "kcmp",
	} {
		calls = append(calls, call{name: name, want: eperm})
	}
	for i := range calls {
		calls[i].abi = native
	}
	return calls
}

func TestDefaultProfileAMD64(t *testing.T) {
	p, vm := compileDefault(t, "amd64")
	if want := []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32}; !slices.Equal(p.Architectures, want) {
		t.Errorf("architectures %v, want %v", p.Architectures, want)
	}
	calls := append(commonCalls(specs.ArchX86_64),
		call{abi: specs.ArchX86_64, name: "arch_prctl", want: allow},
		call{abi: specs.ArchX86_64, name: "mknod", want: allow},
		call{abi: specs.ArchX86, name: "read", want: allow},
		call{abi: specs.ArchX86, name: "socketcall", want: allow},
		call{abi: specs.ArchX86, name: "keyctl", want: eperm},
		call{abi: specs.ArchX86, name: "clone", args: [6]uint64{unix.CLONE_NEWUSER}, want: eperm},
		call{abi: specs.ArchX86, name: "personality", args: [6]uint64{1 << 32}, want: allow}, // low half only
		call{abi: specs.ArchX86, name: "socket", args: [6]uint64{unix.AF_VSOCK}, want: eperm},
		call{abi: specs.ArchX32, name: "read", want: allow},
		call{abi: specs.ArchX32, name: "rt_sigaction", want: allow}, // x32's own number, 512
		call{abi: specs.ArchX32, nr: x32Bit | 13, want: eperm},      // x86_64's rt_sigaction, not x32's
		call{abi: specs.ArchX32, name: "keyctl", want: eperm},
		call{abi: specs.ArchX32, name: "clone", args: [6]uint64{unix.CLONE_NEWUSER}, want: eperm},
		call{abi: specs.ArchX32, name: "personality", args: [6]uint64{1 << 32}, want: allow}, // 32-bit ABI
		call{abi: specs.ArchAARCH64, name: "read", want: killProcess},
		call{abi: "unknown", nr: 0, want: killProcess},
	)
	checkCalls(t, vm, calls)
	checkAgainstModel(t, p, "amd64", vm)
}

func TestDefaultProfileARM64(t *testing.T) {
	p, vm := compileDefault(t, "arm64")
	if want := []specs.Arch{specs.ArchAARCH64, specs.ArchARM}; !slices.Equal(p.Architectures, want) {
		t.Errorf("architectures %v, want %v", p.Architectures, want)
	}
	calls := append(commonCalls(specs.ArchAARCH64),
		call{abi: specs.ArchARM, name: "read", want: allow},
		call{abi: specs.ArchARM, name: "set_tls", want: allow},    // 0xf0005, ARM private
		call{abi: specs.ArchARM, name: "cacheflush", want: allow}, // 0xf0002
		call{abi: specs.ArchARM, name: "keyctl", want: eperm},
		call{abi: specs.ArchARM, name: "clone", args: [6]uint64{unix.CLONE_NEWUSER}, want: eperm},
		call{abi: specs.ArchARM, nr: 0xf0010, want: enosys}, // above every call named: newer than the profile
		call{abi: specs.ArchX86_64, name: "read", want: killProcess},
		call{abi: specs.ArchX86, name: "read", want: killProcess},
	)
	checkCalls(t, vm, calls)
	checkAgainstModel(t, p, "arm64", vm)
}

func checkCalls(t *testing.T, vm filterVM, calls []call) {
	t.Helper()
	for _, c := range calls {
		audit, n := uint32(0x12345678), c.nr
		if a, ok := abis[c.abi]; ok {
			audit = a.audit
			if c.name != "" {
				n = nr(t, c.abi, c.name)
			}
		}
		if got := vm.run(audit, n, c.args); got != c.want {
			t.Errorf("%v%v: got %#x, want %#x", c, c.args, got, c.want)
		}
	}
}

// checkAgainstModel runs every syscall number of every table (and their
// neighbours, and the edges of the number space) with several argument
// sets through the filter, and compares with model.
func checkAgainstModel(t *testing.T, p *Profile, goarch string, vm filterVM) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	argSets := [][6]uint64{{}, {^uint64(0), ^uint64(0)}, {unix.CLONE_NEWUSER}, {0x20008}, {unix.AF_VSOCK}, {1 << 32}}
	for range 4 {
		argSets = append(argSets, [6]uint64{rng.Uint64(), rng.Uint64() & 0xffffffff, rng.Uint64N(64)})
	}
	audits := map[uint32][]uint32{0x12345678: {0}}
	for _, a := range abis {
		for n := range a.table {
			nr := a.nrBase + uint32(n)
			audits[a.audit] = append(audits[a.audit], nr-1, nr, nr+1)
		}
		audits[a.audit] = append(audits[a.audit], 0, x32Bit-1, x32Bit, x32Bit|0x3ff, 0x7fffffff, 0xfffffffe, 0xffffffff)
	}
	m, checked := newModel(p, goarch), 0
	for audit, nrs := range audits {
		for _, nr := range nrs {
			for _, args := range argSets {
				want := m.ret(audit, nr, args)
				if got := vm.run(audit, nr, args); got != want {
					t.Fatalf("audit %#x nr %#x args %#x: got %#x, model says %#x", audit, nr, args, got, want)
				}
				checked++
			}
		}
	}
	t.Logf("%d calls agree with the model", checked)
}

// model is what a profile means for one call, said plainly: the reference
// the compiled program is checked against.
type model struct {
	p      *Profile
	goarch string
	names  map[specs.Arch]map[uint32]string // each ABI's syscalls, by number
	tops   map[specs.Arch]uint32            // the highest number the profile names, by ABI
}

func newModel(p *Profile, goarch string) model {
	m := model{p: p, goarch: goarch, names: map[specs.Arch]map[uint32]string{}, tops: map[specs.Arch]uint32{}}
	for name, a := range abis {
		m.names[name] = map[uint32]string{}
		for sc, n := range syscallNumbers(a.table) { // x32: only its own number of a call
			m.names[name][n] = sc
		}
		for _, sc := range p.Syscalls {
			for nr, n := range m.names[name] {
				if slices.Contains(sc.Names, n) {
					m.tops[name] = max(m.tops[name], nr)
				}
			}
		}
	}
	return m
}

func (m model) ret(audit, nr uint32, args [6]uint64) uint32 {
	def, _ := retValue(m.p.DefaultAction, m.p.DefaultErrnoRet, nil)
	var inFilter []specs.Arch // the ABIs of this audit arch the filter has
	for i, name := range natives[m.goarch].abis {
		if abis[name].audit == audit && (i == 0 || slices.Contains(m.p.Architectures, name)) {
			inFilter = append(inFilter, name)
		}
	}
	if len(inFilter) == 0 {
		return killProcess
	}
	base := uint32(0) // x86_64's audit arch: numbers with the x32 bit are x32's
	if audit == abis[specs.ArchX86_64].audit {
		base = nr & x32Bit
	}
	i := slices.IndexFunc(inFilter, func(a specs.Arch) bool { return abis[a].nrBase == base })
	if i < 0 {
		return def
	}
	if nr-base > m.tops[inFilter[i]] && def != allow {
		return enosys // newer than every call the profile names: runc's ENOSYS stub
	}
	name, ok := m.names[inFilter[i]][nr-base]
	if !ok {
		return def
	}
	var uncond []uint32
	for _, sc := range m.p.Syscalls {
		if !slices.Contains(sc.Names, name) {
			continue
		}
		ret, _ := retValue(sc.Action, sc.ErrnoRet, m.p.DefaultErrnoRet)
		if len(sc.Args) == 0 {
			uncond = append(uncond, ret)
		} else if argsHold(sc.Args, args, abis[inFilter[i]].wide) {
			return ret
		}
	}
	if len(uncond) > 0 {
		return uncond[0]
	}
	return def
}

// argsHold: all args must hold, unless one argument is compared twice,
// then any (runc's reading).
func argsHold(specArgs []specs.LinuxSeccompArg, args [6]uint64, wide bool) bool {
	idx := map[uint]int{}
	for _, a := range specArgs {
		idx[a.Index]++
	}
	anyOf := len(idx) < len(specArgs)
	for _, a := range specArgs {
		h := holds(a, args[a.Index], wide)
		if anyOf && h {
			return true
		}
		if !anyOf && !h {
			return false
		}
	}
	return !anyOf
}

func holds(a specs.LinuxSeccompArg, arg uint64, wide bool) bool {
	v, v2 := a.Value, a.ValueTwo
	if !wide {
		arg, v, v2 = uint64(uint32(arg)), uint64(uint32(v)), uint64(uint32(v2))
	}
	switch a.Op {
	case specs.OpEqualTo:
		return arg == v
	case specs.OpNotEqual:
		return arg != v
	case specs.OpLessThan:
		return arg < v
	case specs.OpLessEqual:
		return arg <= v
	case specs.OpGreaterThan:
		return arg > v
	case specs.OpGreaterEqual:
		return arg >= v
	case specs.OpMaskedEqual:
		return arg&v == v2
	}
	panic("unknown op " + a.Op)
}

func errnoPtr(e unix.Errno) *uint {
	u := uint(e)
	return &u
}

// profile is a small hand-written profile, with every sub-ABI.
func profile(rules ...specs.LinuxSyscall) *Profile {
	return &Profile{
		DefaultAction: specs.ActErrno,
		Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32, specs.ArchAARCH64, specs.ArchARM},
		Syscalls:      rules,
	}
}

func compileVM(t *testing.T, p *Profile, goarch string) filterVM {
	t.Helper()
	prog, err := compileFor(p, goarch)
	if err != nil {
		t.Fatal(err)
	}
	return newFilterVM(t, prog)
}

// TestOperators checks every comparison, with values that differ in either
// half, on a 64-bit ABI (both halves) and a 32-bit one (low half).
func TestOperators(t *testing.T) {
	const v = 0x1_0000_0005
	values := []uint64{0, 4, 5, 6, 0xffffffff, v - 1, v, v + 1, 0x1_ffff_ffff, 0x2_0000_0000, 0x2_0000_0005, ^uint64(0),
		0x11ab_cdef_0005, 0x1100_0000_0005, 0x1200_0000_0005, 0x1100_0000_0006}
	ops := []specs.LinuxSeccompArg{
		{Index: 2, Op: specs.OpEqualTo, Value: v},
		{Index: 2, Op: specs.OpNotEqual, Value: v},
		{Index: 2, Op: specs.OpLessThan, Value: v},
		{Index: 2, Op: specs.OpLessEqual, Value: v},
		{Index: 2, Op: specs.OpGreaterThan, Value: v},
		{Index: 2, Op: specs.OpGreaterEqual, Value: v},
		{Index: 2, Op: specs.OpMaskedEqual, Value: 0xff00_0000_00ff, ValueTwo: 0x1100_0000_0005},
		{Index: 2, Op: specs.OpMaskedEqual, Value: 0xff, ValueTwo: 5},
		{Index: 2, Op: specs.OpMaskedEqual, Value: 0xff, ValueTwo: 0x1_0000_0005}, // never on 64-bit ABIs
		{Index: 5, Op: specs.OpGreaterThan, Value: 0},
	}
	for _, op := range ops {
		p := profile(specs.LinuxSyscall{Names: []string{"read"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{op}})
		for _, goarch := range []string{"amd64", "arm64"} {
			vm := compileVM(t, p, goarch)
			for _, name := range natives[goarch].abis[:2] {
				a := abis[name]
				for _, val := range values {
					var args [6]uint64
					args[op.Index] = val
					want := eperm
					if holds(op, val, a.wide) {
						want = allow
					}
					if got := vm.run(a.audit, nr(t, name, "read"), args); got != want {
						t.Errorf("%s: arg %#x %s %#x (%#x): got %#x, want %#x", name, val, op.Op, op.Value, op.ValueTwo, got, want)
					}
				}
			}
		}
	}
}

// TestRules checks how rules combine, against the model and a few
// spelled-out cases.
func TestRules(t *testing.T) {
	eacces := unix.SECCOMP_RET_ERRNO | uint32(unix.EACCES)
	eq := func(i uint, v uint64) specs.LinuxSeccompArg {
		return specs.LinuxSeccompArg{Index: i, Op: specs.OpEqualTo, Value: v}
	}
	p := profile(
		// OR: separate rules
		specs.LinuxSyscall{Names: []string{"read"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{eq(0, 1)}},
		specs.LinuxSyscall{Names: []string{"read"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{eq(0, 2)}},
		// AND: one rule, two arguments
		specs.LinuxSyscall{Names: []string{"write"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{eq(0, 1), eq(1, 1<<33|2)}},
		// one argument twice: any (runc)
		specs.LinuxSyscall{Names: []string{"pread64"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{
			{Index: 0, Op: specs.OpGreaterEqual, Value: 10}, {Index: 0, Op: specs.OpLessEqual, Value: 5}}},
		// unconditional first, conditional after: the conditional still decides first
		specs.LinuxSyscall{Names: []string{"close"}, Action: specs.ActAllow},
		specs.LinuxSyscall{Names: []string{"close"}, Action: specs.ActErrno, ErrnoRet: errnoPtr(unix.EACCES), Args: []specs.LinuxSeccompArg{eq(0, 3)}},
		// the first unconditional rule wins
		specs.LinuxSyscall{Names: []string{"getpid", "gettid"}, Action: specs.ActAllow},
		specs.LinuxSyscall{Names: []string{"getpid"}, Action: specs.ActKillProcess},
		// the first conditional rule that holds wins
		specs.LinuxSyscall{Names: []string{"dup"}, Action: specs.ActErrno, ErrnoRet: errnoPtr(unix.EACCES), Args: []specs.LinuxSeccompArg{eq(0, 4)}},
		specs.LinuxSyscall{Names: []string{"dup"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Op: specs.OpLessThan, Value: 10}}},
		// actions
		specs.LinuxSyscall{Names: []string{"kill"}, Action: specs.ActKill},
		specs.LinuxSyscall{Names: []string{"tkill"}, Action: specs.ActKillThread},
		specs.LinuxSyscall{Names: []string{"tgkill"}, Action: specs.ActTrap},
		specs.LinuxSyscall{Names: []string{"uname"}, Action: specs.ActLog},
		specs.LinuxSyscall{Names: []string{"ptrace"}, Action: specs.ActTrace, ErrnoRet: errnoPtr(7)},
		specs.LinuxSyscall{Names: []string{"keyctl"}, Action: specs.ActErrno}, // DefaultErrnoRet
		specs.LinuxSyscall{Names: []string{"no_such_call", "fsync"}, Action: specs.ActAllow},
	)
	p.DefaultErrnoRet = errnoPtr(unix.ENOSYS)
	vm := compileVM(t, p, "amd64")
	x86 := abis[specs.ArchX86_64].audit
	for _, c := range []call{
		{name: "read", args: [6]uint64{1}, want: allow},
		{name: "read", args: [6]uint64{2}, want: allow},
		{name: "read", args: [6]uint64{3}, want: enosys},
		{name: "write", args: [6]uint64{1, 1<<33 | 2}, want: allow},
		{name: "write", args: [6]uint64{1, 2}, want: enosys},
		{name: "write", args: [6]uint64{2, 1<<33 | 2}, want: enosys},
		{name: "pread64", args: [6]uint64{3}, want: allow},
		{name: "pread64", args: [6]uint64{12}, want: allow},
		{name: "pread64", args: [6]uint64{7}, want: enosys},
		{name: "close", args: [6]uint64{3}, want: eacces},
		{name: "close", args: [6]uint64{4}, want: allow},
		{name: "getpid", want: allow},
		{name: "gettid", want: allow},
		{name: "dup", args: [6]uint64{4}, want: eacces},
		{name: "dup", args: [6]uint64{5}, want: allow},
		{name: "dup", args: [6]uint64{10}, want: enosys},
		{name: "kill", want: unix.SECCOMP_RET_KILL_THREAD},
		{name: "tkill", want: unix.SECCOMP_RET_KILL_THREAD},
		{name: "tgkill", want: unix.SECCOMP_RET_TRAP},
		{name: "uname", want: unix.SECCOMP_RET_LOG},
		{name: "ptrace", want: unix.SECCOMP_RET_TRACE | 7},
		{name: "keyctl", want: enosys},
		{name: "fsync", want: allow},
		{name: "fdatasync", want: enosys},
	} {
		if got := vm.run(x86, nr(t, specs.ArchX86_64, c.name), c.args); got != c.want {
			t.Errorf("%s%#x: got %#x, want %#x", c.name, c.args, got, c.want)
		}
	}
	checkAgainstModel(t, p, "amd64", vm)
	checkAgainstModel(t, p, "arm64", compileVM(t, p, "arm64"))
}

// TestArchitectures checks which ABIs get a section.
func TestArchitectures(t *testing.T) {
	read := specs.LinuxSyscall{Names: []string{"read"}, Action: specs.ActAllow}
	native := &Profile{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{read}}
	vm := compileVM(t, native, "amd64")
	checkCalls(t, vm, []call{
		{abi: specs.ArchX86_64, name: "read", want: allow},
		{abi: specs.ArchX86, name: "read", want: killProcess},
		{abi: specs.ArchX32, name: "read", want: eperm}, // x86_64's audit arch, but x32 is not in
	})
	checkAgainstModel(t, native, "amd64", vm)

	foreign := &Profile{DefaultAction: specs.ActErrno, Architectures: []specs.Arch{specs.ArchPPC64LE, specs.ArchX32}, Syscalls: []specs.LinuxSyscall{read}}
	vm = compileVM(t, foreign, "amd64")
	checkCalls(t, vm, []call{
		{abi: specs.ArchX86_64, name: "read", want: allow},
		{abi: specs.ArchX32, name: "read", want: allow},
		{abi: specs.ArchX86, name: "read", want: killProcess},
	})
	checkAgainstModel(t, foreign, "amd64", vm)
}

func TestProgramSize(t *testing.T) {
	var args []specs.LinuxSeccompArg
	var rules []specs.LinuxSyscall
	for i := range uint64(1000) {
		args = append(args, specs.LinuxSeccompArg{Index: 1, Op: specs.OpEqualTo, Value: i << 32})
		rules = append(rules, specs.LinuxSyscall{Names: []string{"ioctl"}, Action: specs.ActAllow, Args: args[i : i+1]})
	}
	_, err := compileFor(profile(rules...), "amd64")
	if err == nil || !strings.Contains(err.Error(), "4096") {
		t.Fatalf("1000 64-bit comparisons: got %v, want an error about the 4096-instruction limit", err)
	}
	// 300 fit, with jumps further than 255 instructions.
	p := profile(rules[:300]...)
	prog, err := compileFor(p, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(prog, func(f unix.SockFilter) bool { return f.Code == unix.BPF_JMP|unix.BPF_JA }) {
		t.Errorf("%d instructions and no unconditional jump: the far-jump path is not tested", len(prog))
	}
	checkAgainstModel(t, p, "amd64", newFilterVM(t, prog))
}

func TestCompileErrors(t *testing.T) {
	ok := specs.LinuxSyscall{Names: []string{"read"}, Action: specs.ActAllow}
	for _, c := range []struct {
		p    *Profile
		want string
	}{
		{nil, "none given"},
		{&Profile{}, "defaultAction: no action"},
		{&Profile{DefaultAction: "SCMP_ACT_MAYBE"}, `unknown action "SCMP_ACT_MAYBE"`},
		{&Profile{DefaultAction: specs.ActErrno, DefaultErrnoRet: errnoPtr(70000)}, "errno 70000"},
		{&Profile{DefaultAction: specs.ActErrno, Architectures: []specs.Arch{"SCMP_ARCH_Z80"}}, `unknown architecture "SCMP_ARCH_Z80"`},
		{profile(ok, specs.LinuxSyscall{Action: specs.ActAllow}), "syscalls[1] names no syscall"},
		{profile(specs.LinuxSyscall{Names: []string{"read"}, Action: specs.ActNotify}), `syscall "read": SCMP_ACT_NOTIFY is not supported`},
		{profile(specs.LinuxSyscall{Names: []string{"read"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 6, Op: specs.OpEqualTo}}}), "argument index 6"},
		{profile(specs.LinuxSyscall{Names: []string{"read"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Op: "SCMP_CMP_APPROX"}}}), `unknown operator "SCMP_CMP_APPROX"`},
	} {
		_, err := compileFor(c.p, "amd64")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("got %v, want an error with %q", err, c.want)
		}
	}
	if _, err := compileFor(profile(ok), "riscv64"); !errors.Is(err, ErrUnsupportedArch) {
		t.Errorf("riscv64: got %v, want ErrUnsupportedArch", err)
	}
}

package seccomp

import (
	"fmt"
	"math"
	"runtime"
	"slices"

	"github.com/elastic/go-seccomp-bpf/arch"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// abi is one system call ABI the filter tells apart.
type abi struct {
	audit  uint32         // seccomp_data.arch of its calls
	nrBase uint32         // added to its table's numbers: x32's __X32_SYSCALL_BIT
	wide   bool           // compare both 32-bit halves of an argument
	table  map[int]string // syscall number to name
}

// abis are the ABIs there are syscall tables for. x32 shares x86_64's audit
// arch, its calls are told apart by the number's x32 bit; libseccomp counts
// it as a 32-bit ABI, so its arguments are compared on their low half only,
// as i386's and arm's are.
var abis = map[specs.Arch]abi{
	specs.ArchX86_64:  {audit: uint32(arch.X86_64.ID), wide: true, table: arch.X86_64.SyscallNumbers},
	specs.ArchX86:     {audit: uint32(arch.I386.ID), table: arch.I386.SyscallNumbers},
	specs.ArchX32:     {audit: uint32(arch.X32.ID), nrBase: uint32(arch.X32.SeccompMask), table: arch.X32.SyscallNumbers},
	specs.ArchAARCH64: {audit: uint32(arch.AARCH64.ID), wide: true, table: arch.AARCH64.SyscallNumbers},
	specs.ArchARM:     {audit: uint32(arch.ARM.ID), table: arch.ARM.SyscallNumbers},
}

// Offsets in struct seccomp_data.
const (
	offNr   = 0
	offArch = 4
	offArgs = 16 // args[i] at offArgs+8*i, low half first (amd64 and arm64 are little-endian)
)

// retBadArch answers a call from an ABI the filter has no section for. It
// kills the whole process where libseccomp kills the thread (SCMP_ACT_KILL):
// a process missing one thread is worse than a dead one.
const retBadArch = unix.SECCOMP_RET_KILL_PROCESS

// Compile turns p into a seccomp program for runtime.GOARCH. It returns
// ErrUnsupportedArch on an architecture other than amd64 and arm64.
//
// The program judges the native ABI and the sub-ABIs p lists (i386 and x32
// on amd64, arm on arm64) and kills the process making a call from any
// other. For one syscall, the rules with args are tried in the profile's
// order and the first whose args all hold decides (as in runc, a rule that
// compares one argument twice holds when any of its comparisons does);
// else the first rule without args; else p.DefaultAction. Syscall names an
// ABI does not have are skipped for it. A number above every call p names
// for an ABI gets ENOSYS, as in runc's filters: such a call is newer than
// the profile, and a C library falls back to an older one on ENOSYS (not
// on EPERM).
func Compile(p *Profile) ([]unix.SockFilter, error) {
	return compileFor(p, runtime.GOARCH)
}

// compileFor is Compile for goarch, so that tests cover every supported
// architecture on any machine.
func compileFor(p *Profile, goarch string) ([]unix.SockFilter, error) {
	nat, ok := natives[goarch]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrUnsupportedArch, goarch)
	}
	pol, err := parse(p)
	if err != nil {
		return nil, err
	}
	raw, err := bpf.Assemble(program(sections(pol, nat)))
	if err != nil {
		return nil, fmt.Errorf("seccomp program: %w", err)
	}
	if len(raw) > unix.BPF_MAXINSNS {
		return nil, fmt.Errorf("seccomp program: %d instructions, over the kernel's limit of %d", len(raw), unix.BPF_MAXINSNS)
	}
	prog := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		prog[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return prog, nil
}

// check is one conditional rule for a syscall in one ABI: when all conds
// hold, the call gets ret.
type check struct {
	conds []cond
	ret   uint32
}

// outcome is what the filter does with one syscall number: the first check
// that holds decides, else fallback.
type outcome struct {
	checks   []check
	fallback uint32
	wide     bool // compare 64-bit arguments
}

// section is the code for one audit arch: every syscall number's outcome,
// as consecutive spans of numbers with the same one.
type section struct {
	audit uint32
	spans []span
}

// span is the numbers from lo up to the next span's lo (the last span runs
// to the top of the uint32 range).
type span struct {
	lo  uint32
	out outcome
	key string // out's identity, to merge neighbours
}

// sections builds the native ABI's section and those of the sub-ABIs the
// profile lists. x32 joins x86_64's section, above its numbers.
func sections(pol policy, nat native) []section {
	var audits []uint32
	byAudit := map[uint32]map[uint32]outcome{}
	gapsByAudit := map[uint32][]gap{}
	for i, name := range nat.abis {
		if i > 0 && !slices.Contains(pol.archs, name) {
			continue
		}
		a := abis[name]
		if byAudit[a.audit] == nil {
			audits = append(audits, a.audit)
			byAudit[a.audit] = map[uint32]outcome{}
		}
		outs, top := decide(pol, a)
		for nr, out := range outs {
			byAudit[a.audit][nr] = out
		}
		if g, ok := newerCalls(pol, a, top); ok {
			gapsByAudit[a.audit] = append(gapsByAudit[a.audit], g)
		}
	}
	secs := make([]section, len(audits))
	for i, audit := range audits {
		secs[i] = section{audit: audit, spans: spans(byAudit[audit], pol.def, gapsByAudit[audit])}
	}
	return secs
}

// gap is a range of syscall numbers, lo to hi-1, whose numbers the profile
// does not name get out instead of the default action.
type gap struct {
	lo, hi uint64
	out    outcome
}

// newerCalls is the ENOSYS stub runc puts in every filter: a syscall
// numbered above all those the profile names for an ABI is newer than the
// profile, and gets ENOSYS, not the default EPERM, so that a C library
// probing it (fchmodat2, clone3, openat2...) falls back to the older call
// it would use on an older kernel. Nothing to do where the default
// already allows everything.
func newerCalls(pol policy, a abi, top uint32) (gap, bool) {
	if pol.def == unix.SECCOMP_RET_ALLOW {
		return gap{}, false
	}
	hi := uint64(math.MaxUint32) + 1
	if a.audit == abis[specs.ArchX86_64].audit && a.nrBase == 0 {
		hi = uint64(abis[specs.ArchX32].nrBase) // x32's numbers start there
	}
	return gap{lo: uint64(top) + 1, hi: hi, out: outcome{fallback: unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)}}, true
}

// decide works out the outcome of every syscall of a the profile names,
// and the highest number it names. Names unknown to a's table are skipped,
// as runc skips them: the profile lists calls of every architecture.
func decide(pol policy, a abi) (outs map[uint32]outcome, top uint32) {
	nums := syscallNumbers(a.table)
	outs = map[uint32]outcome{}
	decided := map[uint32]bool{}
	top = a.nrBase
	for _, r := range pol.rules {
		for _, name := range r.names {
			n, ok := nums[name]
			if !ok {
				continue
			}
			nr := a.nrBase + n
			top = max(top, nr)
			out, seen := outs[nr]
			if !seen {
				out = outcome{fallback: pol.def, wide: a.wide}
			}
			switch {
			case r.alts == nil && !decided[nr]: // the first unconditional rule wins
				out.fallback, decided[nr] = r.ret, true
			case r.alts != nil:
				for _, alt := range r.alts {
					out.checks = append(out.checks, check{conds: narrow(alt, a.wide), ret: r.ret})
				}
			}
			outs[nr] = out
		}
	}
	for nr, out := range outs {
		outs[nr] = trim(out)
	}
	return outs, top
}

// syscallNumbers inverts a syscall table. The x32 table also lists the
// 64-bit-only calls that x32 has its own versions of (rt_sigaction is 13
// and 512): the higher number is x32's, the one libseccomp uses.
func syscallNumbers(table map[int]string) map[string]uint32 {
	nums := make(map[string]uint32, len(table))
	for nr, name := range table {
		if old, ok := nums[name]; !ok || uint32(nr) > old {
			nums[name] = uint32(nr)
		}
	}
	return nums
}

// narrow cuts the values of a 32-bit ABI's conditions to 32 bits, as
// libseccomp does: only the low half of its arguments is compared.
func narrow(conds []cond, wide bool) []cond {
	if wide {
		return conds
	}
	out := make([]cond, len(conds))
	for i, c := range conds {
		c.value, c.value2 = uint64(uint32(c.value)), uint64(uint32(c.value2))
		out[i] = c
	}
	return out
}

// trim drops the last checks when they return the fallback anyway, so that
// syscalls with the same effect share a span.
func trim(out outcome) outcome {
	for n := len(out.checks); n > 0 && out.checks[n-1].ret == out.fallback; n-- {
		out.checks = out.checks[:n-1]
	}
	if len(out.checks) == 0 {
		out.wide = false // no argument is read: the same as a 32-bit ABI's
	}
	return out
}

// spans partitions the whole syscall-number space by outcome: the numbers
// the profile names get theirs, the others their gap's or def.
func spans(outs map[uint32]outcome, def uint32, gaps []gap) []span {
	base := func(nr uint32) outcome {
		for _, g := range gaps {
			if uint64(nr) >= g.lo && uint64(nr) < g.hi {
				return g.out
			}
		}
		return outcome{fallback: def}
	}
	// The outcome is the same between two consecutive boundaries.
	bounds := []uint64{0}
	for nr := range outs {
		bounds = append(bounds, uint64(nr), uint64(nr)+1)
	}
	for _, g := range gaps {
		bounds = append(bounds, g.lo, g.hi)
	}
	slices.Sort(bounds)
	var ss []span
	for _, b := range slices.Compact(bounds) {
		if b > math.MaxUint32 {
			break
		}
		nr := uint32(b)
		out, ok := outs[nr]
		if !ok {
			out = base(nr)
		}
		ss = appendSpan(ss, newSpan(nr, out))
	}
	return ss
}

func newSpan(lo uint32, out outcome) span {
	return span{lo: lo, out: out, key: fmt.Sprint(out)}
}

// appendSpan adds s after ss: it replaces a last span starting at the same
// number (the default placed after the previous syscall) and extends the
// last span instead if the outcome is the same.
func appendSpan(ss []span, s span) []span {
	if last := len(ss) - 1; last >= 0 && ss[last].lo == s.lo {
		ss = ss[:last]
	}
	if last := len(ss) - 1; last >= 0 && ss[last].key == s.key {
		return ss
	}
	return append(ss, s)
}

// program lays out the filter: dispatch on the audit arch, then in each
// section a binary search on the syscall number down to the span's code.
func program(secs []section) []bpf.Instruction {
	var b builder
	starts := make([]int, len(secs))
	for i := len(secs) - 1; i >= 0; i-- {
		b.search(secs[i].spans)
		b.load(offNr)
		starts[i] = b.here()
	}
	b.ret(retBadArch)
	for i := len(secs) - 1; i >= 0; i-- {
		b.jump(bpf.JumpEqual, secs[i].audit, starts[i], b.here())
	}
	b.load(offArch)
	return b.program()
}

// builder writes a program backwards, from its last instruction, so that
// every jump's target is already placed and its distance known: a
// conditional jump (8-bit offsets) too far for its target goes through an
// unconditional one (32-bit offset) right after it. A label is the value of
// here() after its instruction was written.
type builder struct {
	rev []bpf.Instruction
}

func (b *builder) here() int                { return len(b.rev) }
func (b *builder) emit(ins bpf.Instruction) { b.rev = append(b.rev, ins) }
func (b *builder) dist(label int) int       { return len(b.rev) - label }
func (b *builder) ret(v uint32)             { b.emit(bpf.RetConstant{Val: v}) }
func (b *builder) load(off uint32)          { b.emit(bpf.LoadAbsolute{Off: off, Size: 4}) }
func (b *builder) and(mask uint32)          { b.emit(bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: mask}) }
func (b *builder) ja(label int)             { b.emit(bpf.Jump{Skip: uint32(b.dist(label))}) }

// jump writes "if A test k goto jt else goto jf".
func (b *builder) jump(test bpf.JumpTest, k uint32, jt, jf int) {
	for {
		switch {
		case b.dist(jt) > math.MaxUint8:
			b.ja(jt)
			jt = b.here()
		case b.dist(jf) > math.MaxUint8:
			b.ja(jf)
			jf = b.here()
		default:
			b.emit(bpf.JumpIf{Cond: test, Val: k, SkipTrue: uint8(b.dist(jt)), SkipFalse: uint8(b.dist(jf))})
			return
		}
	}
}

// program returns the instructions in execution order.
func (b *builder) program() []bpf.Instruction {
	prog := slices.Clone(b.rev)
	slices.Reverse(prog)
	return prog
}

// search writes the binary search over spans (A holds the syscall number).
func (b *builder) search(ss []span) {
	if len(ss) == 1 {
		b.outcome(ss[0].out)
		return
	}
	mid := len(ss) / 2
	b.search(ss[mid:])
	upper := b.here()
	b.search(ss[:mid])
	b.jump(bpf.JumpGreaterOrEqual, ss[mid].lo, upper, b.here())
}

// outcome writes the checks in order, each falling through to the next when
// one of its conditions fails, then the fallback.
func (b *builder) outcome(out outcome) {
	b.ret(out.fallback)
	for i := len(out.checks) - 1; i >= 0; i-- {
		next := b.here()
		b.ret(out.checks[i].ret)
		conds := out.checks[i].conds
		for j := len(conds) - 1; j >= 0; j-- {
			b.cond(conds[j], out.wide, b.here(), next)
		}
	}
}

// cond writes one argument comparison, going to pass if it holds, else to
// fail. A 64-bit comparison looks at the high halves first; the low halves
// decide only when those are equal. NE, LT and LE are EQ, GE and GT with
// the targets swapped.
func (b *builder) cond(c cond, wide bool, pass, fail int) {
	op := c.op
	switch op {
	case specs.OpNotEqual:
		op, pass, fail = specs.OpEqualTo, fail, pass
	case specs.OpLessThan:
		op, pass, fail = specs.OpGreaterEqual, fail, pass
	case specs.OpLessEqual:
		op, pass, fail = specs.OpGreaterThan, fail, pass
	}
	want, mask := c.value, uint64(0)
	if op == specs.OpMaskedEqual {
		want, mask = c.value2, c.value
	}
	lo := offArgs + 8*uint32(c.index)
	b.jump(jumpTests[op], uint32(want), pass, fail)
	if op == specs.OpMaskedEqual {
		b.and(uint32(mask))
	}
	b.load(lo)
	if !wide || (op == specs.OpMaskedEqual && mask>>32 == 0 && want>>32 == 0) {
		return // no high half, or one that always matches
	}
	next := b.here()
	b.jump(bpf.JumpEqual, uint32(want>>32), next, fail)
	switch op {
	case specs.OpGreaterThan, specs.OpGreaterEqual:
		b.jump(bpf.JumpGreaterThan, uint32(want>>32), pass, b.here())
	case specs.OpMaskedEqual:
		b.and(uint32(mask >> 32))
	}
	b.load(lo + 4)
}

// jumpTests are the BPF tests of the operators cond writes directly.
var jumpTests = map[specs.LinuxSeccompOperator]bpf.JumpTest{
	specs.OpEqualTo:      bpf.JumpEqual,
	specs.OpMaskedEqual:  bpf.JumpEqual,
	specs.OpGreaterThan:  bpf.JumpGreaterThan,
	specs.OpGreaterEqual: bpf.JumpGreaterOrEqual,
}

package archcheck

import (
	"debug/elf"
	"encoding/binary"
	"fmt"

	specs "github.com/opencontainers/image-spec/specs-go/v1"
)

// headerSize is the size of an ELF64 header, the larger of the two classes:
// all a check ever reads of a file.
const headerSize = 64

// efMIPSABI2 is EF_MIPS_ABI2: a 32-bit class MIPS file using the n32 ABI
// of a 64-bit CPU.
const efMIPSABI2 = 0x20

// Header is what an ELF file header says about the machine the file is for.
type Header struct {
	Class   elf.Class
	Data    elf.Data
	OSABI   elf.OSABI // usually SYSV even for Linux programs; never judged
	Type    elf.Type
	Machine elf.Machine
	Flags   uint32
}

// ParseHeader decodes the ELF header at the start of b, which must hold the
// whole header (52 bytes for 32-bit files, 64 for 64-bit ones).
func ParseHeader(b []byte) (Header, error) {
	if len(b) < elf.EI_NIDENT || string(b[:4]) != elf.ELFMAG {
		return Header{}, fmt.Errorf("%w: no ELF magic", ErrNotELF)
	}
	h := Header{
		Class: elf.Class(b[elf.EI_CLASS]),
		Data:  elf.Data(b[elf.EI_DATA]),
		OSABI: elf.OSABI(b[elf.EI_OSABI]),
	}
	var order binary.ByteOrder
	switch h.Data {
	case elf.ELFDATA2LSB:
		order = binary.LittleEndian
	case elf.ELFDATA2MSB:
		order = binary.BigEndian
	default:
		return Header{}, fmt.Errorf("%w: unknown byte order %d", ErrNotELF, b[elf.EI_DATA])
	}
	var typ, machine uint16
	switch h.Class {
	case elf.ELFCLASS32:
		var eh elf.Header32
		if _, err := binary.Decode(b, order, &eh); err != nil {
			return Header{}, fmt.Errorf("%w: %d bytes, a 32-bit header has %d", ErrNotELF, len(b), binary.Size(eh))
		}
		typ, machine, h.Flags = eh.Type, eh.Machine, eh.Flags
	case elf.ELFCLASS64:
		var eh elf.Header64
		if _, err := binary.Decode(b, order, &eh); err != nil {
			return Header{}, fmt.Errorf("%w: %d bytes, a 64-bit header has %d", ErrNotELF, len(b), binary.Size(eh))
		}
		typ, machine, h.Flags = eh.Type, eh.Machine, eh.Flags
	default:
		return Header{}, fmt.Errorf("%w: unknown class %d", ErrNotELF, b[elf.EI_CLASS])
	}
	h.Type, h.Machine = elf.Type(typ), elf.Machine(machine)
	return h, nil
}

// IsProgram reports whether the file is something the loader runs or maps:
// an executable or a shared object (which includes PIE executables). Object
// files and core dumps are not judged.
func (h Header) IsProgram() bool {
	return h.Type == elf.ET_EXEC || h.Type == elf.ET_DYN
}

// Platform returns the Linux platform the file is for, without a variant (an
// ELF header does not tell arm/v6 from arm/v7). false means the machine,
// class and byte order name no OCI architecture.
func (h Header) Platform() (specs.Platform, bool) {
	arch, _ := h.describe()
	if arch == "" {
		return specs.Platform{}, false
	}
	return specs.Platform{OS: "linux", Architecture: arch}, true
}

// String describes the machine the way file(1) would: "x86-64", "ARM aarch64".
func (h Header) String() string {
	_, desc := h.describe()
	return desc
}

// Match reports whether a binary with header h runs natively on want. Only
// architectures are compared: any arm variant is accepted for arm/*, and 386
// binaries run on amd64. The class must fit: 32-bit arm in an arm64 image
// and x32 in an amd64 image do not match.
func Match(h Header, want specs.Platform) bool {
	got, ok := h.Platform()
	if !ok {
		return false
	}
	return archRuns(want.Architecture, got.Architecture)
}

// archRuns reports whether a CPU of architecture host runs code for arch.
func archRuns(host, arch string) bool {
	return host == arch || host == "amd64" && arch == "386"
}

// describe names the architecture (empty when there is no such platform)
// and describes the machine for messages.
func (h Header) describe() (arch, desc string) {
	is64 := h.Class == elf.ELFCLASS64
	le := h.Data == elf.ELFDATA2LSB
	switch h.Machine {
	case elf.EM_X86_64:
		if is64 {
			return "amd64", "x86-64"
		}
		return "amd64p32", "x86-64 x32 ABI"
	case elf.EM_386:
		if !is64 {
			return "386", "Intel 80386"
		}
	case elf.EM_AARCH64:
		if is64 {
			return endian(le, "arm64", "ARM aarch64")
		}
	case elf.EM_ARM:
		if !is64 {
			return endian(le, "arm", "ARM 32-bit")
		}
	case elf.EM_PPC64:
		if is64 {
			return endian(le, "ppc64", "PowerPC64")
		}
	case elf.EM_PPC:
		if !is64 && !le {
			return "ppc", "PowerPC 32-bit"
		}
	case elf.EM_S390:
		if is64 {
			return "s390x", "IBM S/390x 64-bit"
		}
		return "s390", "IBM S/390 31-bit"
	case elf.EM_RISCV:
		if is64 {
			return "riscv64", "RISC-V 64-bit"
		}
		return "riscv", "RISC-V 32-bit"
	case elf.EM_LOONGARCH:
		if is64 {
			return "loong64", "LoongArch 64-bit"
		}
	case elf.EM_MIPS, elf.EM_MIPS_RS3_LE:
		return h.describeMIPS()
	case elf.EM_SPARC:
		if !is64 {
			return "sparc", "SPARC"
		}
	case elf.EM_SPARCV9:
		if is64 {
			return "sparc64", "SPARC V9"
		}
	}
	return "", fmt.Sprintf("%v %s %s", h.Machine, bits(h.Class), byteOrder(le))
}

func (h Header) describeMIPS() (arch, desc string) {
	le := h.Data == elf.ELFDATA2LSB || h.Machine == elf.EM_MIPS_RS3_LE
	switch {
	case h.Class == elf.ELFCLASS64:
		return mipsEndian(le, "mips64", "MIPS64")
	case h.Flags&efMIPSABI2 != 0:
		return mipsEndian(le, "mips64p32", "MIPS64 n32")
	default:
		return mipsEndian(le, "mips", "MIPS 32-bit")
	}
}

// endian names the big-endian form of an architecture whose default is
// little-endian (arm64be, armbe) and ppc64le, whose default is big.
func endian(le bool, arch, desc string) (string, string) {
	switch {
	case arch == "ppc64" && le:
		return "ppc64le", desc + " little-endian"
	case arch == "ppc64":
		return "ppc64", desc + " big-endian"
	case le:
		return arch, desc
	default:
		return arch + "be", desc + " big-endian"
	}
}

// mipsEndian: MIPS names its little-endian forms (mipsle, mips64le).
func mipsEndian(le bool, arch, desc string) (string, string) {
	if le {
		return arch + "le", desc + " little-endian"
	}
	return arch, desc + " big-endian"
}

func bits(c elf.Class) string {
	if c == elf.ELFCLASS64 {
		return "64-bit"
	}
	return "32-bit"
}

func byteOrder(le bool) string {
	if le {
		return "LSB"
	}
	return "MSB"
}

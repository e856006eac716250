package archcheck

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"testing"

	"kiln/platform"
)

// elfHeader builds the header of a file for machine m.
func elfHeader(class elf.Class, data elf.Data, typ elf.Type, m elf.Machine, flags uint32) []byte {
	var order binary.ByteOrder = binary.LittleEndian
	if data == elf.ELFDATA2MSB {
		order = binary.BigEndian
	}
	var ident [elf.EI_NIDENT]byte
	copy(ident[:], elf.ELFMAG)
	ident[elf.EI_CLASS], ident[elf.EI_DATA], ident[elf.EI_VERSION] = byte(class), byte(data), byte(elf.EV_CURRENT)
	var v any
	if class == elf.ELFCLASS64 {
		v = &elf.Header64{Ident: ident, Type: uint16(typ), Machine: uint16(m), Version: 1, Flags: flags, Ehsize: 64}
	} else {
		v = &elf.Header32{Ident: ident, Type: uint16(typ), Machine: uint16(m), Version: 1, Flags: flags, Ehsize: 52}
	}
	b, err := binary.Append(nil, order, v)
	if err != nil {
		panic(err)
	}
	return b
}

func TestHeaderPlatform(t *testing.T) {
	const (
		c32, c64 = elf.ELFCLASS32, elf.ELFCLASS64
		le, be   = elf.ELFDATA2LSB, elf.ELFDATA2MSB
	)
	tests := []struct {
		name     string
		class    elf.Class
		data     elf.Data
		machine  elf.Machine
		flags    uint32
		wantArch string // "" for no platform
		wantDesc string
	}{
		{"x86-64", c64, le, elf.EM_X86_64, 0, "amd64", "x86-64"},
		{"x32", c32, le, elf.EM_X86_64, 0, "amd64p32", "x86-64 x32 ABI"},
		{"i386", c32, le, elf.EM_386, 0, "386", "Intel 80386"},
		{"aarch64", c64, le, elf.EM_AARCH64, 0, "arm64", "ARM aarch64"},
		{"aarch64 big-endian", c64, be, elf.EM_AARCH64, 0, "arm64be", "ARM aarch64 big-endian"},
		{"aarch64 ilp32", c32, le, elf.EM_AARCH64, 0, "", "EM_AARCH64 32-bit LSB"},
		{"arm", c32, le, elf.EM_ARM, 0x05000400, "arm", "ARM 32-bit"},
		{"arm big-endian", c32, be, elf.EM_ARM, 0, "armbe", "ARM 32-bit big-endian"},
		{"ppc64le", c64, le, elf.EM_PPC64, 2, "ppc64le", "PowerPC64 little-endian"},
		{"ppc64", c64, be, elf.EM_PPC64, 1, "ppc64", "PowerPC64 big-endian"},
		{"ppc", c32, be, elf.EM_PPC, 0, "ppc", "PowerPC 32-bit"},
		{"s390x", c64, be, elf.EM_S390, 0, "s390x", "IBM S/390x 64-bit"},
		{"s390 31-bit", c32, be, elf.EM_S390, 0, "s390", "IBM S/390 31-bit"},
		{"riscv64", c64, le, elf.EM_RISCV, 5, "riscv64", "RISC-V 64-bit"},
		{"riscv32", c32, le, elf.EM_RISCV, 0, "riscv", "RISC-V 32-bit"},
		{"loongarch64", c64, le, elf.EM_LOONGARCH, 0x43, "loong64", "LoongArch 64-bit"},
		{"mips o32", c32, be, elf.EM_MIPS, 0x70001007, "mips", "MIPS 32-bit big-endian"},
		{"mipsel o32", c32, le, elf.EM_MIPS, 0x70001007, "mipsle", "MIPS 32-bit little-endian"},
		{"mips rs3 le", c32, be, elf.EM_MIPS_RS3_LE, 0, "mipsle", "MIPS 32-bit little-endian"},
		{"mips64", c64, be, elf.EM_MIPS, 0, "mips64", "MIPS64 big-endian"},
		{"mips64el", c64, le, elf.EM_MIPS, 0, "mips64le", "MIPS64 little-endian"},
		{"mips n32", c32, le, elf.EM_MIPS, efMIPSABI2, "mips64p32le", "MIPS64 n32 little-endian"},
		{"sparc64", c64, be, elf.EM_SPARCV9, 0, "sparc64", "SPARC V9"},
		{"bpf", c64, le, elf.EM_BPF, 0, "", "EM_BPF 64-bit LSB"},
		{"none", c64, be, elf.EM_NONE, 0, "", "EM_NONE 64-bit MSB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := ParseHeader(elfHeader(tt.class, tt.data, elf.ET_DYN, tt.machine, tt.flags))
			if err != nil {
				t.Fatal(err)
			}
			if h.Machine != tt.machine || h.Class != tt.class || h.Data != tt.data || h.Flags != tt.flags {
				t.Errorf("header %+v", h)
			}
			p, ok := h.Platform()
			if ok != (tt.wantArch != "") || p.Architecture != tt.wantArch || ok && p.OS != "linux" {
				t.Errorf("Platform() = %+v, %v; want %q", p, ok, tt.wantArch)
			}
			if got := h.String(); got != tt.wantDesc {
				t.Errorf("String() = %q, want %q", got, tt.wantDesc)
			}
		})
	}
}

func TestMatch(t *testing.T) {
	x86 := elfHeader(elf.ELFCLASS64, elf.ELFDATA2LSB, elf.ET_EXEC, elf.EM_X86_64, 0)
	i386 := elfHeader(elf.ELFCLASS32, elf.ELFDATA2LSB, elf.ET_EXEC, elf.EM_386, 0)
	a64 := elfHeader(elf.ELFCLASS64, elf.ELFDATA2LSB, elf.ET_EXEC, elf.EM_AARCH64, 0)
	arm := elfHeader(elf.ELFCLASS32, elf.ELFDATA2LSB, elf.ET_EXEC, elf.EM_ARM, 0)
	x32 := elfHeader(elf.ELFCLASS32, elf.ELFDATA2LSB, elf.ET_EXEC, elf.EM_X86_64, 0)
	ppcLE := elfHeader(elf.ELFCLASS64, elf.ELFDATA2LSB, elf.ET_EXEC, elf.EM_PPC64, 0)
	ppcBE := elfHeader(elf.ELFCLASS64, elf.ELFDATA2MSB, elf.ET_EXEC, elf.EM_PPC64, 0)
	freebsd := elfHeader(elf.ELFCLASS64, elf.ELFDATA2LSB, elf.ET_EXEC, elf.EM_X86_64, 0)
	freebsd[elf.EI_OSABI] = byte(elf.ELFOSABI_FREEBSD)
	tests := []struct {
		name   string
		header []byte
		want   string
		match  bool
	}{
		{"amd64 on amd64", x86, "linux/amd64", true},
		{"amd64 on amd64/v3", x86, "linux/amd64/v3", true},
		{"386 on amd64", i386, "linux/amd64", true},
		{"amd64 on 386", x86, "linux/386", false},
		{"x32 on amd64", x32, "linux/amd64", false},
		{"amd64 on arm64", x86, "linux/arm64", false},
		{"arm64 on arm64", a64, "linux/arm64", true},
		{"arm on arm64", arm, "linux/arm64", false},
		{"arm64 on arm", a64, "linux/arm/v7", false},
		{"arm on arm/v7", arm, "linux/arm/v7", true},
		{"arm on arm/v6", arm, "linux/arm/v6", true},
		{"arm on arm/v5", arm, "linux/arm/v5", true},
		{"ppc64le on ppc64le", ppcLE, "linux/ppc64le", true},
		{"ppc64 on ppc64le", ppcBE, "linux/ppc64le", false},
		{"osabi not judged", freebsd, "linux/amd64", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := ParseHeader(tt.header)
			if err != nil {
				t.Fatal(err)
			}
			if got := Match(h, platform.MustParse(tt.want)); got != tt.match {
				t.Errorf("Match(%s, %s) = %v, want %v", h, tt.want, got, tt.match)
			}
		})
	}
}

func TestParseHeaderNotELF(t *testing.T) {
	full64 := elfHeader(elf.ELFCLASS64, elf.ELFDATA2LSB, elf.ET_EXEC, elf.EM_X86_64, 0)
	full32 := elfHeader(elf.ELFCLASS32, elf.ELFDATA2LSB, elf.ET_EXEC, elf.EM_386, 0)
	badClass := append([]byte(nil), full64...)
	badClass[elf.EI_CLASS] = 7
	badData := append([]byte(nil), full64...)
	badData[elf.EI_DATA] = 0
	tests := []struct {
		name    string
		b       []byte
		wantErr bool
	}{
		{"empty", nil, true},
		{"magic only", []byte("\x7fELF"), true},
		{"script", []byte("#!/bin/sh\necho hello\n"), true},
		{"64-bit header cut at 63 bytes", full64[:63], true},
		{"32-bit header cut at 51 bytes", full32[:51], true},
		{"32-bit class, 52 bytes", full32[:52], false},
		{"64-bit class, 64 bytes", full64, false},
		{"unknown class", badClass, true},
		{"unknown byte order", badData, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseHeader(tt.b)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrNotELF) {
				t.Errorf("err = %v, not ErrNotELF", err)
			}
		})
	}
}

func TestIsProgram(t *testing.T) {
	for typ, want := range map[elf.Type]bool{elf.ET_EXEC: true, elf.ET_DYN: true, elf.ET_REL: false, elf.ET_CORE: false} {
		h, err := ParseHeader(elfHeader(elf.ELFCLASS64, elf.ELFDATA2LSB, typ, elf.EM_X86_64, 0))
		if err != nil {
			t.Fatal(err)
		}
		if h.IsProgram() != want {
			t.Errorf("%v: IsProgram() = %v", typ, !want)
		}
	}
}

// Package seccomp turns a Docker-style seccomp profile into a classic-BPF
// program and installs it, without libseccomp: kiln is a static binary
// (CGO_ENABLED=0), so it cannot use the library runc uses.
//
// The filter it builds behaves as runc's (libseccomp's) build of the same
// profile, the one Docker applies to every container: moby's default profile
// refuses keyctl, bpf, mount, unshare and the other calls a container has no
// business making, with EPERM, and clone3 with ENOSYS, so that C libraries
// fall back to clone.
//
// Compile once in the parent, install in the re-executed init, on the thread
// that will execve the step's command:
//
//	profile, err := seccomp.Default(caps) // caps: the step's bounding set, "CAP_CHOWN", …
//	if err != nil {
//		return err
//	}
//	prog, err := seccomp.Compile(profile)
//	if err != nil {
//		return err
//	}
//	…
//	// in the init, after runtime.LockOSThread, while it still has
//	// CAP_SYS_ADMIN, just before execve:
//	if err := seccomp.Install(prog); err != nil {
//		return err
//	}
//
// A user's profile file (Docker's --security-opt seccomp=FILE) goes through
// Load instead of Default.
//
// Only amd64 and arm64 are supported; Default, Load and Compile return
// ErrUnsupportedArch elsewhere.
package seccomp

import (
	"errors"

	"github.com/opencontainers/runtime-spec/specs-go"
)

// Profile is a seccomp profile already filtered for this machine (its
// architecture, the step's capabilities and the kernel's version), the form
// runc receives in a container's config.json. Its Flags, ListenerPath and
// ListenerMetadata are ignored: no filter flags are set and SCMP_ACT_NOTIFY
// is refused.
type Profile = specs.LinuxSeccomp

// ErrUnsupportedArch is returned for a GOARCH other than amd64 and arm64: the
// only ones this package has syscall tables and argument layouts for.
var ErrUnsupportedArch = errors.New("seccomp: unsupported architecture")

// native describes a GOARCH the package supports: its name in moby's
// profile conditions ("arches" in includes and excludes) and the syscall
// ABIs a process on it can use, native one first.
type native struct {
	mobyName string
	abis     []specs.Arch
}

// natives are the supported GOARCHes. On amd64 a process can also make
// i386 (int 0x80) and x32 system calls, on arm64 32-bit ARM ones, so the
// filter must judge those too, or refuse them.
var natives = map[string]native{
	"amd64": {mobyName: "amd64", abis: []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32}},
	"arm64": {mobyName: "arm64", abis: []specs.Arch{specs.ArchAARCH64, specs.ArchARM}},
}

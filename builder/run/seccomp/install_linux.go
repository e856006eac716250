package seccomp

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Install puts prog on the calling thread (not the whole process: no
// SECCOMP_FILTER_FLAG_TSYNC), for it and the program it will execve. The
// caller must hold its goroutine on the thread (runtime.LockOSThread) and
// exec soon: the Go runtime's other threads stay unfiltered.
//
// Install does not set no_new_privs, as Docker does not by default, so that
// setuid programs keep working in the step; the kernel then requires the
// caller to have CAP_SYS_ADMIN in its user namespace, and refuses with
// EACCES otherwise.
func Install(prog []unix.SockFilter) error {
	if len(prog) == 0 || len(prog) > unix.BPF_MAXINSNS {
		return fmt.Errorf("seccomp: installing the filter: %d instructions, want 1 to %d", len(prog), unix.BPF_MAXINSNS)
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&fprog)))
	if errno == unix.ENOSYS { // before Linux 3.17 there is only the prctl
		_, _, errno = unix.Syscall6(unix.SYS_PRCTL, unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&fprog)), 0, 0, 0)
	}
	runtime.KeepAlive(prog)
	switch errno {
	case 0:
		return nil
	case unix.EACCES:
		return fmt.Errorf("seccomp: installing the filter: %w (needs CAP_SYS_ADMIN or no_new_privs)", errno)
	case unix.EINVAL:
		return fmt.Errorf("seccomp: installing the filter: %w (no seccomp filter support in the kernel?)", errno)
	}
	return fmt.Errorf("seccomp: installing the filter: %w", errno)
}

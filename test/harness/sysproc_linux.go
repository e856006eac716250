package harness

import "syscall"

// sysProcAttr makes the kernel kill the registry if this process dies
// without closing it, so a crashed test leaves nothing running.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

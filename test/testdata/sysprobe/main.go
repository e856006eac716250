// Command sysprobe tries system calls a confined RUN step must not make and
// prints one line per probe, NAME=RESULT, where RESULT is "ok" or the
// errno's name (EPERM). The end-to-end tests build it static and copy it
// into an image: busybox has no applet for most of these calls.
//
//	sysprobe keyctl bpf perf_event_open userfaultfd unshare-user open:/dev/x
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

func main() {
	for _, p := range os.Args[1:] {
		fmt.Printf("%s=%s\n", p, result(probe(p)))
	}
}

func result(err error) string {
	if err == nil {
		return "ok"
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return unix.ErrnoName(errno)
	}
	return strings.ReplaceAll(err.Error(), " ", "_")
}

func probe(name string) error {
	if path, ok := strings.CutPrefix(name, "open:"); ok {
		return openAndRead(path)
	}
	switch name {
	case "keyctl":
		_, err := unix.KeyctlInt(unix.KEYCTL_GET_KEYRING_ID, unix.KEY_SPEC_SESSION_KEYRING, 1, 0, 0)
		return err
	case "add_key":
		_, err := unix.AddKey("user", "kiln-probe", []byte("x"), unix.KEY_SPEC_PROCESS_KEYRING)
		return err
	case "bpf":
		var attr [64]byte
		_, _, e := unix.Syscall(unix.SYS_BPF, 0, uintptr(unsafe.Pointer(&attr[0])), uintptr(len(attr)))
		return errnoErr(e)
	case "perf_event_open":
		attr := unix.PerfEventAttr{Type: unix.PERF_TYPE_SOFTWARE, Config: unix.PERF_COUNT_SW_CPU_CLOCK}
		attr.Size = uint32(unsafe.Sizeof(attr))
		fd, err := unix.PerfEventOpen(&attr, 0, -1, -1, 0)
		if err == nil {
			unix.Close(fd)
		}
		return err
	case "userfaultfd":
		fd, _, e := unix.Syscall(unix.SYS_USERFAULTFD, unix.O_CLOEXEC, 0, 0)
		if e == 0 {
			unix.Close(int(fd))
		}
		return errnoErr(e)
	case "unshare-user":
		return unix.Unshare(unix.CLONE_NEWUSER)
	case "unshare-mount":
		return unix.Unshare(unix.CLONE_NEWNS)
	case "clone3":
		_, _, e := unix.Syscall(unix.SYS_CLONE3, 0, 0, 0)
		return errnoErr(e)
	case "getpid":
		_ = unix.Getpid()
		return nil
	}
	return fmt.Errorf("unknown_probe")
}

func errnoErr(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// openAndRead opens path read-only and reads a byte: a device node on a
// nodev mount fails at open with EPERM (EACCES on older kernels).
func openAndRead(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	b := make([]byte, 1)
	_, err = f.Read(b)
	return err
}

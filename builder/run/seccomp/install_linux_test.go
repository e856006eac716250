package seccomp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// childEnv marks the test binary re-executed as TestInstall's child.
const childEnv = "KILN_SECCOMP_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(installChild())
	}
	os.Exit(m.Run())
}

// childReport is what the child tells the parent: the errno of each call
// ("" when it worked), or why it could not test.
type childReport struct {
	Skip    string
	Errnos  map[string]string
	Seccomp string // the Seccomp line of /proc/self/status
}

// installChild installs Default(dockerCaps) on its thread, makes calls the
// filter must refuse or let through, and prints a childReport.
func installChild() int {
	runtime.LockOSThread()
	report := childReport{Errnos: map[string]string{}}
	defer func() { _ = json.NewEncoder(os.Stdout).Encode(report) }()
	p, err := Default(dockerCaps)
	if err != nil {
		report.Skip = err.Error()
		return 1
	}
	prog, err := Compile(p)
	if err != nil {
		report.Skip = err.Error()
		return 1
	}
	if err := Install(prog); err != nil {
		// Without CAP_SYS_ADMIN the kernel wants no_new_privs, which kiln
		// does not set; the test may, to run as any user.
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			report.Skip = "no_new_privs: " + err.Error()
			return 0
		}
		if err := Install(prog); err != nil {
			report.Skip = err.Error()
			return 0
		}
	}
	try := func(name string, trap uintptr, args ...uintptr) {
		var a [6]uintptr
		copy(a[:], args)
		r, _, errno := unix.Syscall6(trap, a[0], a[1], a[2], a[3], a[4], a[5])
		report.Errnos[name] = ""
		if errno != 0 {
			report.Errnos[name] = unix.ErrnoName(errno)
		} else if name == "socket_unix" {
			unix.Close(int(r))
		}
	}
	const keySpecSessionKeyring = ^uintptr(2) // KEY_SPEC_SESSION_KEYRING, -3
	try("keyctl", unix.SYS_KEYCTL, unix.KEYCTL_GET_KEYRING_ID, keySpecSessionKeyring, 0)
	try("unshare_user", unix.SYS_UNSHARE, unix.CLONE_NEWUSER)
	try("bpf", unix.SYS_BPF, unix.BPF_MAP_CREATE, 0, 0)
	try("perf_event_open", unix.SYS_PERF_EVENT_OPEN, 0, 0, ^uintptr(0), ^uintptr(0), 0)
	try("userfaultfd", unix.SYS_USERFAULTFD, 0)
	try("mount", unix.SYS_MOUNT, 0, 0, 0, 0, 0)
	try("clone3", unix.SYS_CLONE3, 0, 0)
	try("socket_vsock", unix.SYS_SOCKET, unix.AF_VSOCK, unix.SOCK_STREAM, 0)
	try("socket_unix", unix.SYS_SOCKET, unix.AF_UNIX, unix.SOCK_STREAM, 0)
	try("personality", unix.SYS_PERSONALITY, 0xffffffff)
	try("getpid", unix.SYS_GETPID)
	status, err := readStatus()
	report.Errnos["read_status"] = ""
	if err != nil {
		report.Errnos["read_status"] = err.Error()
	}
	for line := range strings.Lines(status) {
		if strings.HasPrefix(line, "Seccomp:") {
			report.Seccomp = strings.TrimSpace(line)
		}
	}
	return 0
}

// readStatus reads /proc/thread-self/status with openat and read on this,
// the filtered, thread.
func readStatus() (string, error) {
	fd, err := unix.Openat(unix.AT_FDCWD, "/proc/thread-self/status", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("openat: %w", err)
	}
	defer unix.Close(fd)
	var buf bytes.Buffer
	chunk := make([]byte, 4096)
	for {
		n, err := unix.Read(fd, chunk)
		if err != nil {
			return "", fmt.Errorf("read: %w", err)
		}
		if n == 0 {
			return buf.String(), nil
		}
		buf.Write(chunk[:n])
	}
}

// TestInstall installs the default filter in a child process and checks
// that the kernel enforces it.
func TestInstall(t *testing.T) {
	if _, ok := natives[runtime.GOARCH]; !ok {
		t.Skip("unsupported GOARCH")
	}
	if status, err := os.ReadFile("/proc/self/status"); err != nil || !bytes.Contains(status, []byte("\nSeccomp:")) {
		t.Skip("no seccomp in this kernel")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	var report childReport
	if jerr := json.Unmarshal(out, &report); jerr != nil {
		t.Fatalf("child: %v, output %q (%v)", err, out, jerr)
	}
	if report.Skip != "" {
		if err != nil {
			t.Fatalf("child: %v: %s", err, report.Skip)
		}
		t.Skipf("cannot install a filter here: %s", report.Skip)
	}
	want := map[string]string{
		"keyctl": "EPERM", "unshare_user": "EPERM", "bpf": "EPERM", "perf_event_open": "EPERM",
		"userfaultfd": "EPERM", "mount": "EPERM", "clone3": "ENOSYS", "socket_vsock": "EPERM",
		"socket_unix": "", "personality": "", "getpid": "", "read_status": "",
	}
	for name, w := range want {
		if got, ok := report.Errnos[name]; !ok || got != w {
			t.Errorf("%s in the filtered child: got %q, want %q", name, got, or(w, "success"))
		}
	}
	if report.Seccomp != "Seccomp:\t2" {
		t.Errorf("child's status line %q, want Seccomp:\\t2", report.Seccomp)
	}
}

func or(s, dflt string) string {
	if s == "" {
		return dflt
	}
	return s
}

func TestInstallRejectsEmpty(t *testing.T) {
	if err := Install(nil); err == nil {
		t.Error("Install(nil): no error")
	}
}

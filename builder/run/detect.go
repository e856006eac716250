package run

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// containerHints are /proc/1/cgroup words that mean "inside a container".
var containerHints = [...]string{"docker", "kubepods", "containerd", "libpod", "lxc", "crio"}

// Detect picks the isolation for this process: chroot as root where
// namespaces can be made (and a proc mounted in them), rootless as another
// user where user namespaces can, container inside a container that allows
// neither. In kiln's own user namespace (ReexecInUserNamespace) it is
// rootless, each step isolated there as a chroot step. The reason is for
// the log. Detect starts a process: call it once
// per build, not per step.
func Detect() (Isolation, string) {
	in, hint := inContainer()
	uid := os.Geteuid()
	err := probeNamespaces(uid != 0)
	switch {
	case err == nil && uid == 0 && InOwnUserNamespace():
		return Rootless, "kiln runs in a user namespace of its own (" + UserNamespaceMap() + "); steps are isolated there as chroot isolation does"

	case err == nil && uid == 0 && in:
		return Chroot, fmt.Sprintf("running as root in a privileged container (%s); namespaces are permitted", hint)
	case err == nil && uid == 0:
		return Chroot, "running as root; mount, PID, UTS and IPC namespaces are permitted"
	case err == nil:
		return Rootless, fmt.Sprintf("running as uid %d; user namespaces are permitted", uid)
	case in:
		return Container, fmt.Sprintf("inside a container (%s) that may not create namespaces (%v)", hint, err)
	}
	return Container, fmt.Sprintf("namespaces are not permitted (%v) and no container was detected: container isolation needs force", err)
}

// inContainer looks for the marks container engines leave.
func inContainer() (bool, string) {
	for _, f := range [...]string{"/.dockerenv", "/run/.containerenv"} {
		if _, err := os.Stat(f); err == nil {
			return true, f
		}
	}
	if os.Getenv("KUBERNETES_SERVICE_HOST") != "" {
		return true, "KUBERNETES_SERVICE_HOST"
	}
	if b, err := os.ReadFile("/proc/1/cgroup"); err == nil {
		for _, h := range containerHints {
			if strings.Contains(string(b), h) {
				return true, "/proc/1/cgroup names " + h
			}
		}
	}
	return false, ""
}

// probeNamespaces starts this program in the namespaces Run needs, where
// MaybeInit tries to mount a proc and exits.
func probeNamespaces(user bool) error {
	prog, _ := InitProgram()
	cmd := exec.Command(prog)
	cmd.Args = []string{"kiln-run-probe"}
	cmd.Env = []string{envMarker + "=" + stageProbeChroot}
	attr := &syscall.SysProcAttr{
		Cloneflags: unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC,
		Pdeathsig:  syscall.SIGKILL,
	}
	if user { // as initCommand starts a rootless init
		cmd.Env = []string{envMarker + "=" + stageProbe}
		attr.Cloneflags |= unix.CLONE_NEWUSER | unix.CLONE_NEWNS
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}}
	}
	cmd.SysProcAttr = attr
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return fmt.Errorf("%w: %s", err, msg)
		}
		return err
	}
	return nil
}

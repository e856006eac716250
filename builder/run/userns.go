package run

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// A rootless build that wants stage filesystems mounted (overlay mounts of
// the layer store) runs whole inside a user and mount namespace of its own,
// as buildah and podman do rootless: the caller is root there, its
// subordinate ids are 1 and up, so kiln can mount, chown an unpacked base to
// its real owners and give each RUN step chroot isolation inside that
// namespace. ReexecInUserNamespace starts it; the re-executed program finds
// itself there with InOwnUserNamespace.

// envUserNS marks a process kiln re-executed in its own user namespace
// (and what it inherits): its value says how ids are mapped, for the log.
const envUserNS = "_KILN_USERNS"

// envUserNSParent is the pid of the process that waits for it, so the
// re-executed program can tell whether it still waits.
const envUserNSParent = "_KILN_USERNS_PARENT"

// stageUserNS (an envMarker value) is the process ReexecInUserNamespace
// starts before its id maps are written: it waits for them, then execs the
// program (fdProgram) again. It is the small embedded init where there is
// one (InitProgram): a start of the whole program costs more than waiting.
const stageUserNS = "userns"

// fdProgram is the program's own executable, open, in a stageUserNS process.
const fdProgram = 4

// ErrNoUserNamespace: the build cannot run in a user namespace of its own
// here (no subordinate id range, no newuidmap, namespaces refused); the
// caller goes on as it is.
var ErrNoUserNamespace = errors.New("no user namespace of kiln's own")

// InOwnUserNamespace says whether this process runs in the user namespace
// ReexecInUserNamespace made (uid 0 there is the user who started kiln).
func InOwnUserNamespace() bool { return os.Getenv(envUserNS) != "" }

// UserNamespaceMap describes the ids of kiln's own user namespace for the
// log: "uid 1000 is 0, 300000-365535 are 1-65536". "" outside one.
func UserNamespaceMap() string { return os.Getenv(envUserNS) }

// SubordinateIDs says whether the caller can have a user namespace that
// maps a subordinate range of uids and gids besides its own: /etc/subuid and
// /etc/subgid name it and newuidmap and newgidmap are installed. why says
// what is missing.
func SubordinateIDs() (ok bool, why string) {
	_, _, err := subordinateRanges()
	if err != nil {
		return false, err.Error()
	}
	return true, ""
}

func subordinateRanges() (uids, gids idRange, err error) {
	uid, gid := os.Getuid(), os.Getgid()
	name := userName(uid)
	uids, ok := subRange("/etc/subuid", uid, name)
	if !ok {
		return uids, gids, fmt.Errorf("no /etc/subuid range for uid %d", uid)
	}
	gids, ok = subRange("/etc/subgid", gid, name)
	if !ok {
		// subgid is keyed by user, like subuid; a group id key is a fallback.
		if gids, ok = subRange("/etc/subgid", uid, name); !ok {
			return uids, gids, fmt.Errorf("no /etc/subgid range for uid %d", uid)
		}
	}
	for _, helper := range []string{"newuidmap", "newgidmap"} {
		if _, err := exec.LookPath(helper); err != nil {
			return uids, gids, fmt.Errorf("%s not installed (Debian: uidmap)", helper)
		}
	}
	return uids, gids, nil
}

// ReexecInUserNamespace runs this program again, with the same arguments,
// environment, standard streams and working directory, in a new user and
// mount namespace where the caller is 0 and its subordinate ranges are 1
// and up, and returns its exit status once it ends. SIGTERM and SIGHUP sent
// to this process are passed on; a terminal's Ctrl-C reaches both, as they
// share the process group; if this process dies, the other is killed. An
// error matching ErrNoUserNamespace means nothing ran: the caller goes on
// without.
func ReexecInUserNamespace(log *slog.Logger) (int, error) {
	if InOwnUserNamespace() {
		return 0, fmt.Errorf("%w: already in one", ErrNoUserNamespace)
	}
	uids, gids, err := subordinateRanges()
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrNoUserNamespace, err)
	}
	uid, gid := os.Getuid(), os.Getgid()
	desc := fmt.Sprintf("uid %d is 0, %d-%d are 1-%d; gid %d is 0, %d-%d are 1-%d",
		uid, uids.start, uids.start+uids.count-1, uids.count, gid, gids.start, gids.start+gids.count-1, gids.count)

	self, err := os.Open("/proc/self/exe")
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrNoUserNamespace, err)
	}
	defer self.Close()
	gateR, gateW, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer gateW.Close()
	waiter, _ := InitProgram()
	cmd := exec.Command(waiter, os.Args[1:]...)
	cmd.Args[0] = os.Args[0]
	cmd.Env = append(withoutEnv(os.Environ(), envMarker, envUserNS, envUserNSParent),
		envMarker+"="+stageUserNS, envUserNS+"="+desc, envUserNSParent+"="+strconv.Itoa(os.Getpid()))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.ExtraFiles = []*os.File{gateR, self} // fdConfig, fdProgram
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWUSER | unix.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	// Pdeathsig follows the thread that started the process: keep it.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	err = cmd.Start()
	gateR.Close()
	if err != nil {
		return 0, fmt.Errorf("%w: starting kiln in a user namespace: %v", ErrNoUserNamespace, err)
	}
	pid := cmd.Process.Pid
	// Both maps at once: each helper is a setuid program's start.
	maps := [2]error{}
	var wg sync.WaitGroup
	for i, m := range []struct {
		helper string
		id     int
		r      idRange
	}{{"newuidmap", uid, uids}, {"newgidmap", gid, gids}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := exec.Command(m.helper, strconv.Itoa(pid), "0", strconv.Itoa(m.id), "1",
				"1", strconv.FormatUint(uint64(m.r.start), 10), strconv.FormatUint(uint64(m.r.count), 10)).CombinedOutput()
			if err != nil {
				maps[i] = fmt.Errorf("%w: %s: %v: %s", ErrNoUserNamespace, m.helper, err, strings.TrimSpace(string(out)))
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(maps[0], maps[1]); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return 0, err
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case s := <-sigs:
				_ = cmd.Process.Signal(s)
			case <-done:
				return
			}
		}
	}()
	log.Debug("running in a user namespace of kiln's own", "ids", desc)
	if _, err := gateW.Write([]byte{'g'}); err != nil {
		_ = cmd.Process.Kill()
	}
	gateW.Close()
	err = cmd.Wait()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ee.ExitCode(), nil
	}
	return 0, err
}

// reexecInUserNS is the process started in the namespace before its id
// maps exist: it waits for them and execs the program (fdProgram), with
// the same arguments, now as
// uid 0 of the namespace (exec grants the namespace's capabilities only to
// uid 0, which it was not when it started).
func reexecInUserNS() {
	gate := make([]byte, 1)
	f := os.NewFile(fdConfig, "gate")
	if _, err := io.ReadFull(f, gate); err != nil {
		fmt.Fprintf(os.Stderr, "kiln: waiting for the user namespace's id maps: %v\n", err)
		os.Exit(125)
	}
	f.Close()
	unix.CloseOnExec(fdProgram) // resolved by the exec before it closes
	env := withoutEnv(os.Environ(), envMarker)
	err := syscall.Exec("/proc/self/fd/"+strconv.Itoa(fdProgram), os.Args, env)
	fmt.Fprintf(os.Stderr, "kiln: re-executing in the user namespace: %v\n", err)
	os.Exit(125)
}

// dieWithParent makes the program ReexecInUserNamespace started end when
// the process waiting for it does: the exec that made it root in its
// namespace changed its credentials, which clears the parent-death signal
// clone set, so it is set again here, then the parent checked, in case it
// died before.
func dieWithParent() {
	parent, err := strconv.Atoi(os.Getenv(envUserNSParent))
	if err != nil {
		return
	}
	os.Unsetenv(envUserNSParent) // for this process alone: its children have parents of their own
	_ = unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0, 0, 0)
	if os.Getppid() != parent {
		os.Exit(128 + int(syscall.SIGKILL))
	}
}

// withoutEnv drops the variables named from env.
func withoutEnv(env []string, names ...string) []string {
	out := env[:0:0]
	for _, kv := range env {
		keep := true
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				keep = false
			}
		}
		if keep {
			out = append(out, kv)
		}
	}
	return out
}

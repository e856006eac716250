package run

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// envMarker tells MaybeInit which part of the re-executed program it is.
const envMarker = "_KILN_RUN_INIT"

// Values of envMarker.
const (
	stageProbe       = "probe"        // Detect, rootless: try the mounts a step makes, exit
	stageProbeChroot = "probe-chroot" // Detect, chroot: make the mount namespace as stageChroot does, then as stageProbe
	stageMap         = "stage1"       // rootless: wait for the id maps, then re-exec as stageInit
	stageInit        = "init"         // set up the root and exec the command
	stageChroot      = "chroot"       // make the step's mount (and network) namespace, then as stageInit
)

// Extra file descriptors the init inherits.
const (
	fdConfig = 3 // read: a gate byte (rootless) then the JSON initConfig
	fdStatus = 4 // write: why the setup failed; closed on exec
)

// waitDelay bounds how long Run waits for output pipes after the command
// ended or was killed.
const waitDelay = 5 * time.Second

// initConfig is what the init needs, sent through fdConfig.
type initConfig struct {
	Root      string
	Mounts    []mountOp
	Args      []string
	Env       []string
	Dir       string
	UID, GID  uint32
	Groups    []uint32
	SetGroups bool // false when setgroups is denied (single-id rootless)
	Hostname  string
	Loopback  bool       // the step has its own network namespace (made by a stageChroot init): bring lo up
	DropCaps  bool       // keep only Docker's default capabilities
	MaskPaths bool       // mask and make read-only runc's system paths
	Seccomp   bpfProgram `json:",omitempty"`
	Rlimits   []Rlimit   `json:",omitempty"`
}

// Run executes spec.Args inside spec.Root with the isolation. A command that
// fails is an *ExitError; a step whose setup fails matches ErrSetup; a
// cancelled ctx kills the whole process tree and is returned wrapped.
func Run(ctx context.Context, iso Isolation, spec Spec) error {
	return run(ctx, iso, spec, nil)
}

// run is Run, taking the init from r where it has one started.
func run(ctx context.Context, iso Isolation, spec Spec, r *Runner) error {
	if err := spec.validate(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("running %s: %w", spec.Args[0], context.Cause(ctx))
	}
	switch effective(iso) {
	case Chroot, Rootless:
		return runIsolated(ctx, effective(iso), spec, r)
	case Container:
		return runContainer(ctx, spec)
	}
	return fmt.Errorf("%w: isolation %q", ErrBadSpec, iso)
}

// effective is how a step is isolated: in kiln's own user namespace
// (ReexecInUserNamespace) kiln is root there, and a rootless step is
// isolated as a chroot step is, inside it.
func effective(iso Isolation) Isolation {
	if iso == Rootless && InOwnUserNamespace() && os.Geteuid() == 0 {
		return Chroot
	}
	return iso
}

// runIsolated starts this program again as the step's init in new
// namespaces (or takes the one r started), hands it the step through a
// pipe and waits for the command.
func runIsolated(ctx context.Context, iso Isolation, spec Spec, r *Runner) error {
	mounts, created, err := planMounts(spec)
	defer removeCreated(created)
	if err != nil {
		return err
	}
	filter, err := spec.Security.filter()
	if err != nil {
		return err
	}
	cfg := initConfig{
		Root: spec.Root, Mounts: mounts, Args: spec.Args, Env: spec.Env, Dir: spec.Dir,
		UID: spec.UID, GID: spec.GID, Groups: spec.Groups, SetGroups: true,
		Hostname: spec.Hostname, Loopback: spec.network() == NetworkNone, DropCaps: iso == Chroot,
		MaskPaths: !spec.Security.SystemPathsUnconfined, Seccomp: filter, Rlimits: spec.Security.Rlimits,
	}
	cg := stepCgroup(spec)
	defer cg.remove()
	tail := &tailWriter{}
	p, err := r.take(iso, spec, tail)
	if err != nil {
		return fmt.Errorf("%w: starting the %s init for %s: %v", ErrSetup, iso, spec.Args[0], err)
	}
	defer p.statusR.Close()
	defer p.cfgW.Close()
	// Killing the init, PID 1 of the step's PID namespace, kills every
	// process of the step.
	stop := context.AfterFunc(ctx, func() { _ = p.cmd.Process.Kill() })
	defer stop()
	// The init waits for its config before it does anything: moved now,
	// every process of the step starts in the cgroup.
	if err := cg.add(p.cmd.Process.Pid); err != nil {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
		return fmt.Errorf("%w for %s: %v", ErrSetup, spec.Args[0], err)
	}
	if iso == Rootless {
		if err := mapIDs(p.cmd.Process.Pid, &cfg, logger(spec)); err != nil {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
			return err
		}
		_, _ = p.cfgW.Write([]byte{'g'}) // the maps are written: re-exec
	}
	// A write error means the init died; its status or exit says why.
	_ = json.NewEncoder(p.cfgW).Encode(cfg)
	p.cfgW.Close()
	r.prestart()                       // the next step's init starts up while this step runs
	status, _ := io.ReadAll(p.statusR) // ends at exec (close-on-exec) or at a failure
	return result(ctx, spec, p.cmd.Wait(), string(status), tail)
}

// startedInit is an init process waiting on fdConfig for its step.
type startedInit struct {
	cmd     *exec.Cmd
	cfgW    *os.File     // fdConfig's other end
	statusR *os.File     // fdStatus's other end
	out     *laterWriter // a prestarted init's output: the step's writers, set when it gets one
}

// startInit starts this program as an init for the isolation, in the
// namespaces initCommand gives it, with the step's stdin and outputs.
func startInit(iso Isolation, network string, stdin io.Reader, stdout, stderr io.Writer) (*startedInit, error) {
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	statusR, statusW, err := os.Pipe()
	if err != nil {
		cfgR.Close()
		cfgW.Close()
		return nil, err
	}
	cmd := initCommand(iso, network)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	cmd.ExtraFiles = []*os.File{cfgR, statusW} // fdConfig, fdStatus
	err = cmd.Start()
	cfgR.Close()
	statusW.Close()
	if err != nil {
		cfgW.Close()
		statusR.Close()
		return nil, err
	}
	return &startedInit{cmd: cmd, cfgW: cfgW, statusR: statusR}, nil
}

// initCommand is the init (InitProgram: the embedded one, or this program
// re-executed), in the namespaces the isolation asks for. In chroot mode
// the init is started in new PID, UTS and IPC namespaces and makes its
// mount namespace (and network namespace, for Network "none") itself once
// it has its step, so that an init can be started before the step's root
// is mounted (Runner); a rootless init gets all of them, its user
// namespace first, from clone.
func initCommand(iso Isolation, network string) *exec.Cmd {
	flags := uintptr(unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC)
	stage := stageChroot
	if iso == Rootless {
		flags |= unix.CLONE_NEWUSER | unix.CLONE_NEWNS
		if network == NetworkNone {
			flags |= unix.CLONE_NEWNET
		}
		stage = stageMap
	}
	prog, _ := InitProgram()
	cmd := exec.Command(prog)
	cmd.Args = []string{"kiln-run-init"}
	cmd.Env = []string{envMarker + "=" + stage}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: flags, Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = waitDelay
	return cmd
}

// result turns how the command ended into Run's error.
func result(ctx context.Context, spec Spec, waitErr error, status string, tail *tailWriter) error {
	if ctx.Err() != nil && waitErr != nil {
		return fmt.Errorf("running %s: %w", spec.Args[0], context.Cause(ctx))
	}
	if status != "" {
		return fmt.Errorf("%w for %s: %s", ErrSetup, spec.Args[0], strings.TrimSpace(status))
	}
	if waitErr == nil {
		return nil
	}
	var ee *exec.ExitError
	if !errors.As(waitErr, &ee) {
		return fmt.Errorf("running %s: %w", spec.Args[0], waitErr)
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	if ok && ws.Signaled() {
		return &ExitError{Code: 128 + int(ws.Signal()), Signal: unix.SignalName(ws.Signal()), Tail: tail.String()}
	}
	return &ExitError{Code: ee.ExitCode(), Tail: tail.String()}
}

// outputs are the command's stdout and stderr, both also feeding tail. When
// the caller gives one writer for both, so does the command: one pipe keeps
// the order of the lines.
func outputs(spec Spec, tail *tailWriter) (stdout, stderr io.Writer) {
	stdout = teeTail(spec.Stdout, tail)
	if sameWriter(spec.Stdout, spec.Stderr) {
		return stdout, stdout
	}
	return stdout, teeTail(spec.Stderr, tail)
}

func sameWriter(a, b io.Writer) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return reflect.TypeOf(a) == reflect.TypeOf(b) && reflect.TypeOf(a).Comparable() && a == b
}

func teeTail(w io.Writer, tail *tailWriter) io.Writer {
	if w == nil {
		return tail
	}
	return io.MultiWriter(tail, w)
}

func logger(spec Spec) *slog.Logger {
	if spec.Log != nil {
		return spec.Log
	}
	return slog.New(slog.DiscardHandler)
}

// bpfProgram is a seccomp filter as the init's config carries it: its
// instructions packed as the kernel takes them (8 bytes each), base64 in
// the JSON, which the init decodes in microseconds where a JSON array of
// a thousand objects took it a millisecond or more.
type bpfProgram []unix.SockFilter

func (p bpfProgram) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 8*len(p))
	for _, in := range p {
		b = binary.LittleEndian.AppendUint16(b, in.Code)
		b = append(b, in.Jt, in.Jf)
		b = binary.LittleEndian.AppendUint32(b, in.K)
	}
	return json.Marshal(b)
}

func (p *bpfProgram) UnmarshalJSON(data []byte) error {
	var b []byte
	if err := json.Unmarshal(data, &b); err != nil {
		return err
	}
	if len(b)%8 != 0 {
		return fmt.Errorf("seccomp filter of %d bytes, not whole instructions", len(b))
	}
	prog := make(bpfProgram, len(b)/8)
	for i := range prog {
		in := b[8*i : 8*i+8]
		prog[i] = unix.SockFilter{Code: binary.LittleEndian.Uint16(in), Jt: in[2], Jf: in[3], K: binary.LittleEndian.Uint32(in[4:])}
	}
	*p = prog
	return nil
}

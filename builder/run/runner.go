package run

import (
	"context"
	"io"
	"sync"

	"golang.org/x/sys/unix"
)

// Runner runs a build's steps as Run does, and in chroot isolation keeps
// the next step's init started ahead: a step's init is this program
// re-executed, and starting it (the Go runtime of a large binary) is most
// of a short step's time. The init waits in new PID, UTS and IPC
// namespaces, outside any step's cgroup, until a step hands it its config;
// only then does it make its mount and network namespaces, mount and drop
// privileges, exactly as an init Run starts. Close it when the build ends.
//
//	r := run.NewRunner(iso)
//	defer r.Close()
//	err := r.Run(ctx, spec) // as run.Run(ctx, iso, spec)
type Runner struct {
	iso Isolation

	mu     sync.Mutex
	spare  *startedInit // started, waiting for a step
	closed bool
	last   bool // no step follows the one running (SetLast)
}

// SetLast says whether the next step Run runs is the last the caller
// expects: no init is then started ahead for a step after it, which would
// only be ended unused. A step that comes all the same starts its own.
func (r *Runner) SetLast(last bool) {
	r.mu.Lock()
	r.last = last
	r.mu.Unlock()
}

// NewRunner returns a Runner for the isolation; in chroot isolation it
// starts the first step's init at once.
func NewRunner(iso Isolation) *Runner {
	r := &Runner{iso: effective(iso)}
	if r.iso == Chroot {
		if p := takeSpare(); p != nil && p.waiting() {
			r.spare = p // started by DetectAhead
		} else {
			p.discardIfAny()
		}
	}
	r.prestart()
	return r
}

// Run executes spec as Run(ctx, iso, spec) does.
func (r *Runner) Run(ctx context.Context, spec Spec) error {
	return run(ctx, r.iso, spec, r)
}

// Close ends the init started ahead, if there is one; Run then starts each
// step's init itself.
func (r *Runner) Close() {
	r.mu.Lock()
	spare := r.spare
	r.spare, r.closed = nil, true
	r.mu.Unlock()
	if spare != nil {
		spare.discard()
	}
}

// prestart starts an init for a step to come unless one is waiting. A nil
// Runner (Run) starts none.
func (r *Runner) prestart() {
	if r == nil || r.iso != Chroot {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.spare != nil || r.last {
		return
	}
	out := &laterWriter{}
	p, err := startInit(Chroot, "", nil, out, out) // one pipe for both, as outputs gives one writer
	if err != nil {
		return // the step starts its own
	}
	p.out = out
	r.spare = p
}

// take returns an init for the step: the one started ahead where it can
// serve (chroot isolation, no stdin, one writer for both outputs, as a
// build's steps have), else a new one.
func (r *Runner) take(iso Isolation, spec Spec, tail *tailWriter) (*startedInit, error) {
	if r != nil && iso == Chroot && r.iso == Chroot && spec.Stdin == nil && sameWriter(spec.Stdout, spec.Stderr) {
		r.mu.Lock()
		p := r.spare
		r.spare = nil
		r.mu.Unlock()
		if p != nil && p.waiting() {
			p.out.set(teeTail(spec.Stdout, tail))
			return p, nil
		}
		if p != nil {
			p.discard()
		}
	}
	stdout, stderr := outputs(spec, tail)
	return startInit(iso, spec.network(), spec.Stdin, stdout, stderr)
}

// waiting tells whether the init is still alive: an init that died (killed
// while it waited) has closed its end of the status pipe.
func (p *startedInit) waiting() bool {
	rc, err := p.statusR.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	_ = rc.Control(func(fd uintptr) {
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 0)
		alive = err == nil && n == 0
	})
	return alive
}

// discard ends an init that got no step.
func (p *startedInit) discard() {
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
	p.cfgW.Close()
	p.statusR.Close()
}

// laterWriter passes writes on to a writer set after the process that
// writes was started; before that (an init writes nothing until it has its
// step) they are dropped.
type laterWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *laterWriter) set(w io.Writer) {
	l.mu.Lock()
	l.w = w
	l.mu.Unlock()
}

func (l *laterWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	w := l.w
	l.mu.Unlock()
	if w == nil {
		return len(b), nil
	}
	return w.Write(b)
}

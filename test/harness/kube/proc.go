//go:build linux

package kube

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is one process the cluster started, with its output in a log file.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	log     *os.File
	done    chan struct{} // closed when the process has exited
	waitErr error         // set before done is closed

	stopOnce sync.Once
	stopped  bool // Stop asked it to exit, so its exit is no failure
}

// startProc starts bin with args, its stdout and stderr appended to
// logPath. The kernel kills it if the test process dies (Pdeathsig).
func startProc(name, logPath string, env []string, bin string, args ...string) (*proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(f, "+ %s %s\n", bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, log: f, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// exitError describes an exit that nobody asked for, with the log's tail.
func (p *proc) exitError() error {
	return fmt.Errorf("%s (pid %d) exited: %v\n%s", p.name, p.pid(), p.waitErr, p.tail())
}

// tail returns the last lines of the process's log, for failure messages.
func (p *proc) tail() string {
	return fmt.Sprintf("--- last lines of %s ---\n%s", p.logPath, tailFile(p.logPath, 40, 8<<10))
}

// tailFile returns the last lines (at most maxBytes) of path.
func tailFile(path string, lines int, maxBytes int64) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err.Error()
	}
	off := max(st.Size()-maxBytes, 0)
	b, err := io.ReadAll(io.NewSectionReader(f, off, st.Size()-off))
	if err != nil {
		return err.Error()
	}
	ls := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if off > 0 && len(ls) > 1 {
		ls = ls[1:] // a partial first line
	}
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// stop sends SIGTERM to the process's PID, SIGKILL after grace, and waits
// for it. It is safe to call more than once.
func (p *proc) stop(grace time.Duration) {
	p.stopOnce.Do(func() {
		p.stopped = true
		if p.exited() {
			return
		}
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			_ = p.cmd.Process.Kill()
		}
		select {
		case <-p.done:
			return
		case <-time.After(grace):
		}
		_ = p.cmd.Process.Kill()
		<-p.done
	})
}

package run

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestRunner(t *testing.T) {
	requireChroot(t)
	r := NewRunner(Chroot)
	defer r.Close()
	tests := []struct {
		name    string
		spec    Spec
		want    string // the output, stdout and stderr in one writer
		wantErr error
		code    int
		check   func(t *testing.T, root string)
	}{
		{name: "output in order", spec: Spec{Args: sh("echo one; echo two >&2; echo three")}, want: "one\ntwo\nthree\n"},
		{name: "PID 1 in a fresh proc", spec: Spec{Args: sh("echo $$; test -e /proc/self/status && echo proc")}, want: "1\nproc\n"},
		{name: "exit code", spec: Spec{Args: sh("echo bye; exit 7")}, want: "bye\n", wantErr: &ExitError{}, code: 7},
		{name: "own network namespace", spec: Spec{Args: sh("grep -c : /proc/net/dev"), Network: NetworkNone}, want: "1\n"},
		{name: "hostname and user", spec: Spec{Args: sh("hostname; id -u"), Hostname: "spare", UID: 1000, GID: 1000},
			want: "spare\n1000\n"},
		{name: "nodev and read-only system paths", spec: Spec{Args: sh("grep -c ' \\(/\\|/proc\\|/sys\\|/dev\\) [^ ]*nodev' /proc/self/mountinfo; grep -c ' /proc/sys ro,' /proc/self/mountinfo")},
			want: "4\n1\n"},
		{name: "unknown command fails the setup", spec: Spec{Args: []string{"no-such-tool"}}, wantErr: ErrSetup},
		{name: "writes land in the root", spec: Spec{Args: sh("echo x > /tmp/made")},
			check: func(t *testing.T, root string) {
				if _, err := os.Stat(filepath.Join(root, "tmp/made")); err != nil {
					t.Error(err)
				}
				for _, p := range []string{"proc", "dev", "sys"} {
					if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
						t.Errorf("/%s left in the root", p)
					}
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := makeRoot(t)
			var out bytes.Buffer
			spec := tt.spec
			spec.Root, spec.Stdout, spec.Stderr = root, &out, &out
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := r.Run(ctx, spec)
			checkErr(t, err, tt.wantErr, tt.code, out.String())
			if tt.want != "" && out.String() != tt.want {
				t.Errorf("output = %q, want %q", out.String(), tt.want)
			}
			if tt.check != nil {
				tt.check(t, root)
			}
			if r.spare == nil {
				t.Error("no init started ahead for the next step")
			}
		})
	}
}

func TestRunnerReplacesADeadInit(t *testing.T) {
	requireChroot(t)
	r := NewRunner(Chroot)
	defer r.Close()
	if r.spare == nil {
		t.Fatal("NewRunner started no init")
	}
	dead := r.spare.cmd.Process
	if err := dead.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	var out bytes.Buffer
	err := r.Run(context.Background(), Spec{Root: makeRoot(t), Args: sh("echo fine"), Stdout: &out, Stderr: &out})
	if err != nil || out.String() != "fine\n" {
		t.Fatalf("Run after the waiting init died: %v, output %q", err, out.String())
	}
}

// A step said to be the last starts no init ahead; the next one, if one
// comes all the same, starts its own.
func TestRunnerLastStep(t *testing.T) {
	requireChroot(t)
	r := NewRunner(Chroot)
	defer r.Close()
	r.SetLast(true)
	for i := range 2 {
		var out bytes.Buffer
		if err := r.Run(context.Background(), Spec{Root: makeRoot(t), Args: sh("echo fine"), Stdout: &out, Stderr: &out}); err != nil || out.String() != "fine\n" {
			t.Fatalf("step %d: %v, output %q", i+1, err, out.String())
		}
		if r.spare != nil {
			t.Fatalf("step %d, the last: an init was started ahead", i+1)
		}
	}
}

func TestRunnerClose(t *testing.T) {
	requireChroot(t)
	r := NewRunner(Chroot)
	spare := r.spare
	if spare == nil {
		t.Fatal("NewRunner started no init")
	}
	r.Close()
	if spare.cmd.ProcessState == nil {
		t.Error("Close left the waiting init running")
	}
	var out bytes.Buffer
	err := r.Run(context.Background(), Spec{Root: makeRoot(t), Args: sh("echo after"), Stdout: &out, Stderr: &out})
	if err != nil || out.String() != "after\n" {
		t.Fatalf("Run after Close: %v, output %q", err, out.String())
	}
	if r.spare != nil {
		t.Error("a closed Runner started an init ahead")
	}
}

func TestRunnerCancelKillsTheTree(t *testing.T) {
	requireChroot(t)
	r := NewRunner(Chroot)
	defer r.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- r.Run(ctx, Spec{Root: makeRoot(t), Args: sh("sleep 42421 & sleep 42422 & echo started; wait"), Stdout: &out, Stderr: &out})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for len(sleepers()) < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := len(sleepers()); n < 2 {
		t.Fatalf("%d sleeps running, want 2 (output %q)", n, out.String())
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run error = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after the cancel")
	}
	time.Sleep(100 * time.Millisecond)
	if left := sleepers(); len(left) > 0 {
		t.Errorf("processes left running: %v", left)
	}
	if !strings.Contains(out.String(), "started") {
		t.Errorf("output = %q", out.String())
	}
}

// syncBuffer is a bytes.Buffer read while a step writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

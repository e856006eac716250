package manifest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// helperEnv makes the test binary, re-executed, act as another process
// holding a lock (see TestHelperProcess).
const helperEnv = "KILN_MANIFEST_HELPER_LAYOUT"

// TestHelperProcess is not a test: run by lockInOtherProcess, it takes the
// shared lock on the layout named in $KILN_MANIFEST_HELPER_LAYOUT, says
// "locked" on stdout and holds the lock until its stdin is closed, then exits
// without unlocking: the kernel must release the lock with the process.
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv(helperEnv)
	if dir == "" {
		t.Skip("helper process for TestLockExclusiveWaitsForOtherProcess")
	}
	l, err := OpenLayout(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	unlock, err := l.LockShared(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fmt.Println("locked")
	io.Copy(io.Discard, os.Stdin)
	// Reachable until here: a collected lock file would be closed, and the lock
	// released, by its finalizer.
	runtime.KeepAlive(unlock)
	os.Exit(0)
}

func TestLockSharedTwice(t *testing.T) {
	l := openTestLayout(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	unlock1, err := l.LockShared(ctx)
	if err != nil {
		t.Fatal(err)
	}
	unlock2, err := l.LockShared(ctx)
	if err != nil {
		t.Fatalf("second shared lock: %v", err)
	}
	// Both are shared: an exclusive lock cannot be had while either is held.
	for i, unlock := range []func() error{unlock1, unlock2} {
		short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
		_, err := l.LockExclusive(short, nil)
		cancelShort()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("exclusive lock with %d shared held: %v, want DeadlineExceeded", 2-i, err)
		}
		if err := unlock(); err != nil {
			t.Fatal(err)
		}
	}
	unlockX, err := l.LockExclusive(ctx, nil)
	if err != nil {
		t.Fatalf("exclusive lock after both shared released: %v", err)
	}
	if err := unlockX(); err != nil {
		t.Fatal(err)
	}
	if err := unlockX(); err != nil {
		t.Errorf("second unlock: %v, want nil", err)
	}
}

func TestLockExclusiveWaitsForShared(t *testing.T) {
	l := openTestLayout(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	unlockShared, err := l.LockShared(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var waits atomic.Int32
	waiting := make(chan struct{})
	var released atomic.Bool
	type result struct {
		unlock      func() error
		err         error
		afterUnlock bool
	}
	done := make(chan result, 1)
	go func() {
		unlock, err := l.LockExclusive(ctx, func() {
			if waits.Add(1) == 1 {
				close(waiting)
			}
		})
		done <- result{unlock, err, released.Load()}
	}()
	select {
	case <-waiting:
	case r := <-done:
		t.Fatalf("exclusive lock taken while a shared one is held: %v", r.err)
	}
	// Several polls happen meanwhile; none may succeed, and waiting is not
	// called again.
	select {
	case r := <-done:
		t.Fatalf("exclusive lock taken while a shared one is held: %v", r.err)
	case <-time.After(300 * time.Millisecond):
	}
	released.Store(true)
	if err := unlockShared(); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer r.unlock()
	if !r.afterUnlock {
		t.Error("exclusive lock returned before the shared lock was released")
	}
	if n := waits.Load(); n != 1 {
		t.Errorf("waiting called %d times, want 1", n)
	}
}

func TestLockSharedWaitsForExclusive(t *testing.T) {
	l := openTestLayout(t)
	unlock, err := l.LockExclusive(context.Background(), func() { t.Error("waiting called for a free lock") })
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := l.LockShared(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("shared lock while exclusive held: %v, want DeadlineExceeded", err)
	}
}

func TestLockWaitEndsWithContext(t *testing.T) {
	tests := []struct {
		name    string
		ctx     func() (context.Context, context.CancelFunc)
		wantErr error
	}{
		{name: "deadline", wantErr: context.DeadlineExceeded, ctx: func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 100*time.Millisecond)
		}},
		{name: "cancel", wantErr: context.Canceled, ctx: func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(100*time.Millisecond, cancel)
			return ctx, cancel
		}},
		{name: "already cancelled", wantErr: context.Canceled, ctx: func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx, cancel
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := openTestLayout(t)
			unlock, err := l.LockShared(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			defer unlock()
			ctx, cancel := tt.ctx()
			defer cancel()
			var waits atomic.Int32
			u, err := l.LockExclusive(ctx, func() { waits.Add(1) })
			if err == nil {
				u()
			}
			checkErr(t, err, tt.wantErr)
			if waits.Load() != 1 {
				t.Errorf("waiting called %d times, want 1", waits.Load())
			}
		})
	}
}

func TestLockExclusiveWaitsForOtherProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process")
	}
	l := openTestLayout(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+l.Dir())
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	locked := make(chan error, 1)
	reaped := make(chan struct{})
	go func() {
		defer close(reaped)
		// Drain stdout so the child never blocks on it, then reap it.
		sc := bufio.NewScanner(stdout)
		said := false
		for sc.Scan() {
			if sc.Text() == "locked" && !said {
				said = true
				locked <- nil
			}
		}
		err := cmd.Wait()
		if !said {
			locked <- fmt.Errorf("helper exited without locking: %v", err)
		}
	}()
	t.Cleanup(func() {
		stdin.Close()
		select {
		case <-reaped:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-reaped
		}
	})
	select {
	case err := <-locked:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("helper process did not take the lock")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	waiting := make(chan struct{})
	var told atomic.Bool
	type result struct {
		unlock    func() error
		err       error
		afterTold bool
	}
	done := make(chan result, 1)
	go func() {
		unlock, err := l.LockExclusive(ctx, func() { close(waiting) })
		done <- result{unlock, err, told.Load()}
	}()
	select {
	case <-waiting:
	case r := <-done:
		t.Fatalf("exclusive lock taken while another process holds a shared one: %v", r.err)
	}
	told.Store(true)
	stdin.Close() // the helper exits, still holding its lock
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer r.unlock()
	if !r.afterTold {
		t.Error("exclusive lock returned before the other process exited")
	}
}

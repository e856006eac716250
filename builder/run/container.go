package run

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
)

// runContainer runs the command with the process's own / as the root: no
// namespaces, only the working directory, environment and credentials. Its
// mounts are put in place for the step and taken away after it.
func runContainer(ctx context.Context, spec Spec) error {
	if filepath.Clean(spec.Root) != "/" {
		return fmt.Errorf("%w: container isolation needs root %q, not %q", ErrBadSpec, "/", spec.Root)
	}
	if !spec.Force {
		if in, _ := inContainer(); !in {
			return fmt.Errorf("%w: no container detected (force it to run anyway)", ErrNotInContainer)
		}
	}
	undo, err := placeMounts(ctx, "/", spec.Mounts, spec.Keep)
	if err == nil {
		err = execContainer(ctx, spec)
	}
	if uerr := undo(); uerr != nil {
		// What stays in place would end up in the layer: the step fails.
		return errors.Join(err, fmt.Errorf("%w: after %s: %v", ErrSetup, spec.Args[0], uerr))
	}
	return err
}

// execContainer runs the command on "/" and waits for it and its children.
func execContainer(ctx context.Context, spec Spec) error {
	dir := spec.Dir
	if dir == "" {
		dir = "/"
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("%w for %s: working directory %s is not a directory", ErrSetup, spec.Args[0], dir)
	}
	prog, err := lookPath(spec.Args[0], spec.Env, dir)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrSetup, err)
	}

	tail := &tailWriter{}
	cmd := exec.CommandContext(ctx, prog)
	cmd.Args, cmd.Env, cmd.Dir = spec.Args, spec.Env, dir
	if cmd.Env == nil {
		cmd.Env = []string{}
	}
	cmd.Stdin = spec.Stdin
	cmd.Stdout, cmd.Stderr = outputs(spec, tail)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: credential(spec)}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = waitDelay
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%w: starting %s: %v", ErrSetup, spec.Args[0], err)
	}
	waitErr := cmd.Wait()
	// What the command left running in the background goes with it.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	return result(ctx, spec, waitErr, "", tail)
}

// credential is the user to switch to, or nil to stay who we are.
func credential(spec Spec) *syscall.Credential {
	if os.Geteuid() == 0 {
		return &syscall.Credential{Uid: spec.UID, Gid: spec.GID, Groups: spec.Groups}
	}
	extra := extraGroups(spec.GID, spec.Groups)
	if int(spec.UID) == os.Getuid() && int(spec.GID) == os.Getgid() && len(extra) == 0 {
		return nil
	}
	return &syscall.Credential{Uid: spec.UID, Gid: spec.GID, Groups: spec.Groups, NoSetGroups: len(extra) == 0}
}

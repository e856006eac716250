package run

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path"
)

// Isolation is how a command is separated from the host.
type Isolation string

// The isolation modes; see the package doc.
const (
	Chroot    Isolation = "chroot"
	Rootless  Isolation = "rootless"
	Container Isolation = "container"
)

// Network values for Spec.Network.
const (
	NetworkHost = "host"
	NetworkNone = "none"
)

// Sentinel errors, checked with errors.Is.
var (
	// ErrBadSpec: the Spec cannot be run (no Args, an unknown network or
	// isolation, a relative path, Root not "/" in container mode).
	ErrBadSpec = errors.New("invalid run spec")
	// ErrNotInContainer: container mode was asked for outside a container
	// without Spec.Force.
	ErrNotInContainer = errors.New("container isolation outside a container")
	// ErrUnmappedID: rootless mode could map only the caller's own id, and
	// the step asked for another user or group.
	ErrUnmappedID = errors.New("id not mapped in the user namespace")
	// ErrSetup: the isolated init failed before the command started
	// (a mount, the working directory, the executable lookup).
	ErrSetup = errors.New("setting up the step")
	// ErrUnknownUser: a user or group name is not in the root's
	// /etc/passwd or /etc/group.
	ErrUnknownUser = errors.New("unknown user or group")
)

// Mount binds a host path into the root for one step.
//
// Container isolation may not mount: there each Mount is put in place on
// "/" for the step and taken away after it (see placeMounts). A Shared
// mount that is not ReadOnly becomes a symlink to Source, so the step's
// writes reach it (a cache); every other Mount becomes a copy of Source,
// whose changes are thrown away, read-only or not.
type Mount struct {
	Source   string // path on the host
	Target   string // absolute path inside the root
	ReadOnly bool
	Shared   bool // the step's writes must reach Source (a cache mount)
}

// Spec is one command to run.
type Spec struct {
	Root   string   // the root filesystem; "/" in container mode
	Args   []string // argv; Args[0] is looked up in Env's PATH inside the root
	Env    []string // the command's whole environment
	Dir    string   // working directory inside the root; must exist; "" is "/"
	UID    uint32
	GID    uint32
	Groups []uint32 // supplementary groups

	Network  string // NetworkHost (the default when empty) or NetworkNone
	Hostname string // set in the step's UTS namespace; empty keeps the host's
	Mounts   []Mount

	// Security confines the step (seccomp, masked paths, limits); its zero
	// value is Docker's defaults.
	Security Security

	Stdin          io.Reader
	Stdout, Stderr io.Writer

	// Force allows container mode where no container was detected.
	Force bool
	// Keep lists the paths container mode must never put a mount over or
	// in (volumes, kiln's own folder): targets are checked once resolved.
	Keep []string
	// Log receives warnings (a single-id user namespace); nil discards.
	Log *slog.Logger
}

// MountPoints lists the paths inside the root that Run mounts over while the
// step runs: what a snapshot must not read from a live step, and what it
// should ignore if it finds them. Those Run creates are removed after the
// step when still empty, and their parent directory gets its atime and mtime
// back; its ctime cannot be restored, so a stat-based snapshot should not
// take a ctime-only change of a MountPoints parent as a change.
func (s Spec) MountPoints() []string {
	pts := []string{"/proc", "/dev", "/sys"}
	if s.network() == NetworkHost {
		pts = append(pts, "/etc/resolv.conf", "/etc/hosts")
	}
	for _, m := range s.Mounts {
		pts = append(pts, path.Clean(m.Target))
	}
	return pts
}

func (s Spec) network() string {
	if s.Network == "" {
		return NetworkHost
	}
	return s.Network
}

func (s Spec) validate() error {
	if len(s.Args) == 0 || s.Args[0] == "" {
		return fmt.Errorf("%w: no command", ErrBadSpec)
	}
	if n := s.network(); n != NetworkHost && n != NetworkNone {
		return fmt.Errorf("%w: network %q (want %q or %q)", ErrBadSpec, n, NetworkHost, NetworkNone)
	}
	if s.Root == "" || !path.IsAbs(s.Root) {
		return fmt.Errorf("%w: root %q is not an absolute path", ErrBadSpec, s.Root)
	}
	if s.Dir != "" && !path.IsAbs(s.Dir) {
		return fmt.Errorf("%w: working directory %q is not absolute", ErrBadSpec, s.Dir)
	}
	if s.Security.PidsLimit < -1 {
		return fmt.Errorf("%w: pids limit %d (want -1 for none, 0 for the default, or a count)", ErrBadSpec, s.Security.PidsLimit)
	}
	for _, m := range s.Mounts {
		if !path.IsAbs(m.Source) || !path.IsAbs(m.Target) {
			return fmt.Errorf("%w: mount %s:%s needs absolute paths", ErrBadSpec, m.Source, m.Target)
		}
	}
	return nil
}

// ExitError is a command that ran and failed.
type ExitError struct {
	Code   int    // the exit status; 128+n when killed by signal n
	Signal string // "SIGKILL" when killed by a signal, else empty
	Tail   string // the last lines (up to 20) of stdout and stderr, interleaved
}

func (e *ExitError) Error() string {
	if e.Signal != "" {
		return fmt.Sprintf("command killed by %s", e.Signal)
	}
	return fmt.Sprintf("command exited with code %d", e.Code)
}

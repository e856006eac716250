package runner

import "errors"

// Sentinel errors, checked with errors.Is.
var (
	// ErrNeedsMatchingNode is wrapped by an *ExecutionError: building a
	// platform here would execute code of another architecture.
	ErrNeedsMatchingNode = errors.New("needs a node of the platform's architecture")

	// ErrStdinContext: a build context on stdin can be read once, and a
	// runner builds each platform from its own copy.
	ErrStdinContext = errors.New(`a build context on stdin ("-") can be read only once: give a folder, a tar file or a git URL`)
)

// More sentinels, for remote runners.
var (
	// ErrPending: a remote build's pod did not start in time (it could not
	// be scheduled, its image could not be pulled, ...).
	ErrPending = errors.New("build did not start")
	// ErrNoNode: no Ready, schedulable node can build the platform.
	ErrNoNode = errors.New("no node for the platform")
)

// RemoteError is a build that ran somewhere else and failed: its message
// names where, the exit code and the last lines of its log.
type RemoteError struct {
	Msg string
}

func (e *RemoteError) Error() string { return e.Msg }

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

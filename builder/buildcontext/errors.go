package buildcontext

import "errors"

// Sentinel errors, checked with errors.Is.
var (
	// ErrExcluded marks a path that .dockerignore removes from the context.
	// Errors carrying it also match fs.ErrNotExist: Docker never sends the path.
	ErrExcluded = errors.New("excluded by .dockerignore")

	// ErrNoMatch marks a COPY source pattern that matches nothing in the
	// context. Errors carrying it also match fs.ErrNotExist.
	ErrNoMatch = errors.New("no file in the build context matches")

	// ErrUnsafeArchive marks a tar entry that would land outside the folder it
	// is extracted into, or that lies about its size.
	ErrUnsafeArchive = errors.New("unsafe archive entry")

	// ErrUnsupportedSource marks a context source Open does not understand.
	ErrUnsupportedSource = errors.New("unsupported build context source")
)

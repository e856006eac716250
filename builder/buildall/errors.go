package buildall

import "errors"

// Sentinel errors, checked with errors.Is.
var (
	// ErrInvalid is wrapped by Plan's errors about its input.
	ErrInvalid = errors.New("invalid build-all input")

	// ErrRequiredFailed is wrapped by an ImageResult's error when a
	// required platform did not build: the index was not pushed or written.
	ErrRequiredFailed = errors.New("a required platform did not build")

	// ErrCanceled is wrapped by the error of a platform that was not built
	// (or stopped) because a required platform of its image failed.
	ErrCanceled = errors.New("not built: a required platform of the image failed")
)

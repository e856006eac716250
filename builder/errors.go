package builder

import "errors"

// Sentinel errors, checked with errors.Is. Errors about a Dockerfile line are
// *dockerfile.Error values wrapping them.
var (
	// ErrForeignRun marks a RUN in a stage whose platform this machine
	// cannot execute natively, emulation not being allowed.
	ErrForeignRun = errors.New("RUN needs a machine of the stage's architecture")

	// ErrNotSupported marks an instruction form kiln does not handle yet
	// (ADD of a git repository).
	ErrNotSupported = errors.New("not supported yet")

	// ErrOffline marks a base image missing from the cache in an offline build.
	ErrOffline = errors.New("not in the cache and the build is offline")

	// ErrPlatformMismatch marks a base image whose config names another
	// platform than the stage that uses it.
	ErrPlatformMismatch = errors.New("the base image is for another platform")

	// ErrNoBaseImages is returned when a FROM names an image and no
	// BaseImages was given (WithBaseImages).
	ErrNoBaseImages = errors.New("no base image source configured")
)

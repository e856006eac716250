package manifest

import (
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrNoSpace: a write into a layout failed because its volume is full (or
// the user's disk quota is used up). What was being written was removed.
// The *NoSpaceError that carries it says which folder and how full.
var ErrNoSpace = errors.New("no space left")

// NoSpaceError is a write that did not fit on the layout's volume.
type NoSpaceError struct {
	Dir  string // the layout folder
	What string // what was being written: "blob sha256:… (13.0 MB)", "index.json"
	// Free and Size are the volume's bytes available to kiln and its total,
	// read when the write failed; both 0 if statfs could not tell.
	Free, Size int64
	Err        error // the write's own error (ENOSPC or EDQUOT inside)
}

func (e *NoSpaceError) Error() string {
	msg := fmt.Sprintf("no room for %s: the volume holding %s is full", e.What, e.Dir)
	if e.Size > 0 {
		msg += fmt.Sprintf(" (%s free of %s)", FormatBytes(e.Free), FormatBytes(e.Size))
	}
	// The errno alone: the temp file's name in the underlying error means
	// nothing to whoever reads this.
	var errno syscall.Errno
	if errors.As(e.Err, &errno) {
		return msg + ": " + errno.Error()
	}
	return msg + ": " + e.Err.Error()
}

func (e *NoSpaceError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrNoSpace) true.
func (e *NoSpaceError) Is(target error) bool { return target == ErrNoSpace }

// noSpace wraps err in a *NoSpaceError if it says the volume holding dir is
// full, and returns it unchanged otherwise.
func noSpace(dir, what string, err error) error {
	if err == nil || !errors.Is(err, syscall.ENOSPC) && !errors.Is(err, syscall.EDQUOT) {
		return err
	}
	var already *NoSpaceError
	if errors.As(err, &already) {
		return err
	}
	e := &NoSpaceError{Dir: dir, What: what, Err: err}
	var st unix.Statfs_t
	if unix.Statfs(dir, &st) == nil {
		e.Free, e.Size = int64(st.Bavail)*int64(st.Bsize), int64(st.Blocks)*int64(st.Bsize)
	}
	return e
}

// FormatBytes is n in decimal units (1.5 MB), as kiln prints sizes everywhere.
func FormatBytes(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}

package archcheck

import (
	"errors"
	"fmt"
	"strings"
)

// ErrNotELF is wrapped by ParseHeader's error for bytes that are not a whole
// ELF header: another format, an unknown class or byte order, or a file
// shorter than its header.
var ErrNotELF = errors.New("not an ELF header")

// ErrForeignArchitecture is wrapped by Report.Err: the image holds binaries
// its platform cannot run. errors.As with *MismatchError gives the paths.
var ErrForeignArchitecture = errors.New("binaries for another architecture")

// maxListed is how many paths a MismatchError message names.
const maxListed = 20

// MismatchError lists the binaries an image's platform cannot run.
type MismatchError struct {
	Want     string // "linux/arm64"
	Findings []Finding
}

func (e *MismatchError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "image for %s contains binaries for another architecture: ", e.Want)
	for i, f := range e.Findings {
		if i == maxListed {
			fmt.Fprintf(&b, " and %d more", len(e.Findings)-maxListed)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(f.String())
	}
	b.WriteString(" (cross-compile for TARGETARCH, or build this platform on a matching node)")
	return b.String()
}

// Unwrap makes errors.Is(err, ErrForeignArchitecture) true.
func (e *MismatchError) Unwrap() error { return ErrForeignArchitecture }

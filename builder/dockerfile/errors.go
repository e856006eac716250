package dockerfile

import (
	"errors"
	"fmt"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// ErrUnknownTarget is wrapped by the error for an Options.Target that names no
// stage of the Dockerfile.
var ErrUnknownTarget = errors.New("unknown target stage")

// ErrNotText is wrapped by the error for an instruction whose lines hold
// bytes that are not UTF-8, or a NUL byte; the *Error names the line.
var ErrNotText = errors.New("a Dockerfile must be UTF-8 text without NUL bytes")

// Error is a problem in a Dockerfile: "Dockerfile:7: FROM: ...".
type Error struct {
	File string // the filename given to the parsing function
	Line int    // 1-based line of the instruction at fault; 0 when the whole file is
	Msg  string // the instruction at fault ("FROM", "COPY", ...); may be empty
	Err  error  // what is wrong
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	var cause string
	if e.Err != nil {
		cause = e.Err.Error()
	}
	// buildkit's messages often begin with the instruction already.
	if e.Msg != "" && !strings.HasPrefix(cause, e.Msg+" ") {
		b.WriteString(": " + e.Msg)
	}
	if cause != "" {
		b.WriteString(": " + cause)
	}
	return b.String()
}

// Unwrap returns the cause, so that errors.Is sees buildkit's and kiln's errors.
func (e *Error) Unwrap() error { return e.Err }

// errAt builds an *Error for the instruction inst at line.
func (f *file) errAt(line int, inst string, err error) *Error {
	return &Error{File: f.name, Line: line, Msg: inst, Err: err}
}

// parseError turns an error of buildkit's parser into an *Error. The parser
// counts an empty file as line 0; kiln points at line 1.
func parseError(filename string, err error) *Error {
	return &Error{File: filename, Line: max(errLine(err), 1), Err: err}
}

// instructionError turns an error of instructions.ParseInstruction into an
// *Error; an unknown instruction is no instruction to name.
func (f *file) instructionError(node *parser.Node, err error) *Error {
	inst := strings.ToUpper(node.Value)
	var unknown *instructions.UnknownInstructionError
	if errors.As(err, &unknown) {
		inst = ""
	}
	return f.errAt(node.StartLine, inst, err)
}

// errLine is the first line buildkit attached to err, or 0.
func errLine(err error) int {
	var le *parser.LocationError
	if !errors.As(err, &le) || len(le.Locations) == 0 || len(le.Locations[0]) == 0 {
		return 0
	}
	return le.Locations[0][0].Start.Line
}

// lineOf is the first line of a buildkit source range.
func lineOf(loc []parser.Range) int {
	if len(loc) == 0 {
		return 0
	}
	return loc[0].Start.Line
}

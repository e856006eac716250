package dockerfile

import (
	"bytes"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// A Dockerfile is UTF-8 text. buildkit's parser takes any bytes, and its
// shell lexer (text/scanner) prints "<input>:1:3: invalid character NUL" to
// stderr and carries on, so that a stray byte ends up in a label or a path
// with no error. kiln checks the lines of every instruction (its heredocs
// and continuation lines too) instead; comments, which build nothing, may
// hold anything.

// checkUTF16 refuses a Dockerfile saved as UTF-16, before the parser reads
// its NUL-riddled lines as unknown instructions.
func checkUTF16(dockerfile []byte, filename string) error {
	if bytes.HasPrefix(dockerfile, []byte{0xff, 0xfe}) || bytes.HasPrefix(dockerfile, []byte{0xfe, 0xff}) {
		return &Error{File: filename, Line: 1, Err: fmt.Errorf("the file starts with a UTF-16 byte order mark: %w (save it as UTF-8)", ErrNotText)}
	}
	return nil
}

// checkText refuses the instruction node when one of its lines (lines is
// the file split at "\n") is not text; the error names that line.
func (f *file) checkText(lines [][]byte, node *parser.Node) error {
	for n := max(node.StartLine, 1); n <= node.EndLine && n <= len(lines); n++ {
		if err := textError(lines[n-1]); err != nil {
			inst := ""
			if textError([]byte(node.Value)) == nil { // else the fault is in its name: not printed
				inst = strings.ToUpper(node.Value)
			}
			return f.errAt(n, inst, err)
		}
	}
	return nil
}

// textError says what makes line not UTF-8 text without NUL bytes, nil when
// it is.
func textError(line []byte) error {
	for i := 0; i < len(line); {
		r, size := utf8.DecodeRune(line[i:])
		col := utf8.RuneCount(line[:i]) + 1
		switch {
		case r == 0:
			return fmt.Errorf("a NUL byte at column %d: %w", col, ErrNotText)
		case r == utf8.RuneError && size == 1:
			return fmt.Errorf("byte 0x%02x at column %d is not UTF-8: %w", line[i], col, ErrNotText)
		}
		i += size
	}
	return nil
}

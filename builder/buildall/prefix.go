package buildall

import (
	"bytes"
	"io"
	"sync"
)

// prefixWriter writes whole lines to w, each behind prefix; writers that
// share mu never interleave within a line.
type prefixWriter struct {
	mu     *sync.Mutex // shared by every job's writer
	w      io.Writer
	prefix string

	bufMu sync.Mutex
	buf   []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.bufMu.Lock()
	defer p.bufMu.Unlock()
	p.buf = append(p.buf, b...)
	i := bytes.LastIndexByte(p.buf, '\n')
	if i < 0 {
		return len(b), nil
	}
	err := p.emit(p.buf[:i+1])
	p.buf = append(p.buf[:0], p.buf[i+1:]...)
	return len(b), err
}

// Flush writes a last line that did not end in a newline.
func (p *prefixWriter) Flush() error {
	p.bufMu.Lock()
	defer p.bufMu.Unlock()
	if len(p.buf) == 0 {
		return nil
	}
	err := p.emit(append(p.buf, '\n'))
	p.buf = p.buf[:0]
	return err
}

func (p *prefixWriter) emit(lines []byte) error {
	var out bytes.Buffer
	for _, line := range bytes.SplitAfter(lines, []byte("\n")) {
		if len(line) > 0 {
			out.WriteString(p.prefix)
			out.Write(line)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	_, err := p.w.Write(out.Bytes())
	return err
}

package run

import (
	"bytes"
	"strings"
	"sync"
)

const (
	tailLines   = 20
	tailLineMax = 1024 // bytes kept of one line: a progress bar has no end
)

// tailWriter keeps the last tailLines lines written to it.
type tailWriter struct {
	mu    sync.Mutex
	lines []string
	cur   []byte
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			t.add(p)
			break
		}
		t.add(p[:i])
		t.flush()
		p = p[i+1:]
	}
	return n, nil
}

func (t *tailWriter) add(p []byte) {
	if room := tailLineMax - len(t.cur); room > 0 {
		t.cur = append(t.cur, p[:min(room, len(p))]...)
	}
}

func (t *tailWriter) flush() {
	t.lines = append(t.lines, string(t.cur))
	if len(t.lines) > tailLines {
		t.lines = t.lines[len(t.lines)-tailLines:]
	}
	t.cur = t.cur[:0]
}

// String is the kept lines, the unfinished last one included.
func (t *tailWriter) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := t.lines
	if len(t.cur) > 0 {
		lines = append(lines[:len(lines):len(lines)], string(t.cur))
		if len(lines) > tailLines {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

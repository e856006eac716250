package harness

import (
	"io"
	"strings"
	"sync"
	"testing"
)

// tailWriter copies a process's output to w and keeps its last max bytes
// for error messages. Write errors from w are ignored so a broken log sink
// never blocks the process.
type tailWriter struct {
	w   io.Writer
	max int

	mu  sync.Mutex
	buf []byte
}

func (t *tailWriter) Write(p []byte) (int, error) {
	_, _ = t.w.Write(p)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailWriter) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// tbWriter logs each write through a test.
type tbWriter struct{ t testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.t.Logf("registry: %s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

package harness

import (
	"errors"
	"net/http"
	"strconv"
	"time"
)

// Bytes of body sent before a mid-body fault: half the body, capped.
const (
	maxBytesBeforeFault     = 64 << 10
	unknownBytesBeforeFault = 16 << 10
)

// errFaultInjected stops httputil.ReverseProxy copying the body; it then
// aborts the handler with http.ErrAbortHandler, which the server swallows.
var errFaultInjected = errors.New("fault injected")

// faultWriter passes a response through until `before` body bytes are
// written, then runs fault once; if fault returns an error the rest of the
// body is not sent.
type faultWriter struct {
	http.ResponseWriter
	before int64
	armed  bool // set by WriteHeader for successful responses
	fault  func() error
}

func (p *FaultProxy) midBodyWriter(w http.ResponseWriter, r *http.Request, kind string) *faultWriter {
	fw := &faultWriter{ResponseWriter: w}
	fw.fault = func() error {
		if err := http.NewResponseController(w).Flush(); err != nil {
			return err
		}
		if kind == FaultStall {
			return p.stall(r)
		}
		return p.closeMidBody(w)
	}
	return fw
}

func (w *faultWriter) WriteHeader(code int) {
	if code == http.StatusOK || code == http.StatusPartialContent {
		w.armed = true
		w.before = bytesBeforeFault(w.Header().Get("Content-Length"))
	}
	w.ResponseWriter.WriteHeader(code)
}

func bytesBeforeFault(contentLength string) int64 {
	n, err := strconv.ParseInt(contentLength, 10, 64)
	if err != nil || n < 0 {
		return unknownBytesBeforeFault
	}
	return min(n/2, maxBytesBeforeFault)
}

func (w *faultWriter) Write(b []byte) (int, error) {
	if !w.armed || int64(len(b)) < w.before {
		n, err := w.ResponseWriter.Write(b)
		w.before -= int64(n)
		return n, err
	}
	n, err := w.ResponseWriter.Write(b[:w.before])
	if err != nil {
		return n, err
	}
	w.armed = false
	if err := w.fault(); err != nil {
		return n, err
	}
	m, err := w.ResponseWriter.Write(b[n:])
	return n + m, err
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w *faultWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// closeMidBody closes the connection after what was already flushed.
func (p *FaultProxy) closeMidBody(w http.ResponseWriter) error {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return err
	}
	p.inj.record(FaultResetMidBody)
	_ = conn.Close()
	return errFaultInjected
}

// stall blocks until the client goes away, the proxy closes, or StallFor
// passes; only in the last case does the body continue.
func (p *FaultProxy) stall(r *http.Request) error {
	p.inj.record(FaultStall)
	var timeout <-chan time.Time
	if p.faults.StallFor > 0 {
		t := time.NewTimer(p.faults.StallFor)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-r.Context().Done():
		return r.Context().Err()
	case <-p.closed:
		return errFaultInjected
	case <-timeout:
		return nil
	}
}

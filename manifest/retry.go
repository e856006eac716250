package manifest

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Backoff says how often and how patiently to retry.
type Backoff struct {
	Attempts int           // total tries, at least 1
	Initial  time.Duration // first wait
	Max      time.Duration // cap on one wait, also on a Retry-After the server asks for
}

// DefaultBackoff retries six times over about half a minute.
var DefaultBackoff = Backoff{Attempts: 7, Initial: 250 * time.Millisecond, Max: 10 * time.Second}

func (b Backoff) delay(attempt int) time.Duration {
	d := b.Initial << attempt
	if d <= 0 || d > b.Max {
		d = b.Max
	}
	// Full jitter on the upper half keeps concurrent warmers from marching in step.
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

// retryTransport retries idempotent requests (GET, HEAD) that failed for a
// reason worth retrying, and cancels responses whose body stops moving.
type retryTransport struct {
	inner   http.RoundTripper
	backoff Backoff
	stall   time.Duration
	onRetry func(req *http.Request, attempt int, reason string, wait time.Duration)
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		// Writes are retried whole by their caller (see pushRetry); here
		// they only get the stall timeout, which the upload's own bytes
		// keep from firing.
		return t.once(req)
	}
	for attempt := 0; ; attempt++ {
		resp, err := t.once(req)
		last := attempt+1 >= t.backoff.Attempts || req.Context().Err() != nil
		wait, reason, retry := t.classify(resp, err, attempt)
		if !retry || last {
			if retry && err != nil {
				err = &exhaustedError{err: err}
			}
			return resp, err
		}
		if resp != nil {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
		}
		if t.onRetry != nil {
			t.onRetry(req, attempt+1, reason, wait)
		}
		if err := sleepCtx(req.Context(), wait); err != nil {
			return nil, err
		}
	}
}

// once sends req with its own cancel, so that a stalled body can be cut off.
func (t *retryTransport) once(req *http.Request) (*http.Response, error) {
	if t.stall <= 0 {
		return t.inner.RoundTrip(req)
	}
	ctx, cancel := context.WithCancel(req.Context())
	fired := new(atomic.Bool)
	timer := time.AfterFunc(t.stall, func() { fired.Store(true); cancel() })
	out := req.WithContext(ctx)
	if req.Body != nil && req.Body != http.NoBody {
		out.Body = &progressBody{rc: req.Body, timer: timer, stall: t.stall}
	}
	resp, err := t.inner.RoundTrip(out)
	if err != nil {
		timer.Stop()
		cancel()
		if fired.Load() {
			err = &StallError{Op: "waiting for response headers", After: t.stall, Err: err}
		}
		return nil, err
	}
	resp.Body = &stallBody{rc: resp.Body, timer: timer, cancel: cancel, stall: t.stall, fired: fired}
	return resp, nil
}

// classify decides whether to retry and how long to wait first.
func (t *retryTransport) classify(resp *http.Response, err error, attempt int) (time.Duration, string, bool) {
	if err != nil {
		if !Retryable(err) || resp == nil && isCanceled(err) {
			return 0, "", false
		}
		return t.backoff.delay(attempt), err.Error(), true
	}
	switch resp.StatusCode {
	case http.StatusTooManyRequests:
		wait := t.backoff.delay(attempt)
		if ra, ok := retryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			if ra > t.backoff.Max {
				return 0, "", false // the server asks for longer than we will wait
			}
			wait = ra
		}
		return wait, resp.Status, true
	case http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable,
		http.StatusGatewayTimeout, http.StatusRequestTimeout:
		return t.backoff.delay(attempt), resp.Status, true
	}
	return 0, "", false
}

// Retryable reports whether err is a network failure worth another try: a
// reset, an unexpected EOF, a timeout or a stall — not a cancelled context,
// and not a refusal by the server.
func Retryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) && !isStall(err) {
		return false
	}
	if isStall(err) {
		return true
	}
	if isTLSFailure(err) {
		return false // an untrusted certificate or a refused handshake: said at once
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
		return false // no such host: a typo, not a flake
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return false // nobody listens there: a wrong address, said at once
	}
	var ne net.Error
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF),
		errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNABORTED),
		errors.Is(err, context.DeadlineExceeded):
		return true
	case errors.As(err, &ne) && ne.Timeout():
		return true
	}
	var oe *net.OpError
	return errors.As(err, &oe)
}

// isCanceled: the caller gave up (not a stall of ours).
func isCanceled(err error) bool {
	return errors.Is(err, context.Canceled) && !isStall(err)
}

func isStall(err error) bool {
	var se *StallError
	return errors.As(err, &se)
}

// exhaustedError is a network failure this transport already retried as
// often as its backoff allows: callers that retry whole operations must not
// multiply that.
type exhaustedError struct{ err error }

func (e *exhaustedError) Error() string { return e.err.Error() }
func (e *exhaustedError) Unwrap() error { return e.err }

// StallError says a transfer made no progress for too long.
type StallError struct {
	Op    string
	After time.Duration
	Err   error
}

func (e *StallError) Error() string {
	return "stalled " + e.Op + ": no data for " + e.After.String()
}
func (e *StallError) Unwrap() error { return e.Err }

// stallBody cancels the request when no byte arrives for the stall period.
type stallBody struct {
	rc     io.ReadCloser
	timer  *time.Timer
	cancel context.CancelFunc
	stall  time.Duration
	fired  *atomic.Bool
	once   sync.Once
}

func (b *stallBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.timer.Reset(b.stall)
	}
	if err != nil && err != io.EOF && b.fired.Load() {
		err = &StallError{Op: "reading body", After: b.stall, Err: err}
	}
	return n, err
}

func (b *stallBody) Close() error {
	b.once.Do(func() { b.timer.Stop() })
	err := b.rc.Close()
	b.cancel()
	return err
}

// progressBody restarts the stall timer whenever the upload sends bytes.
type progressBody struct {
	rc    io.ReadCloser
	timer *time.Timer
	stall time.Duration
}

func (b *progressBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.timer.Reset(b.stall)
	}
	return n, err
}

func (b *progressBody) Close() error { return b.rc.Close() }

// retryAfter parses a Retry-After header: seconds or an HTTP date.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(min(s, 1<<30)) * time.Second, true // capped: a huge value must not wrap around to a short wait
	}
	if t, err := http.ParseTime(v); err == nil {
		d := t.Sub(now)
		if d < 0 {
			d = 0
		}
		return d, true
	}
	return 0, false
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

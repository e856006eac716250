package manifest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

func TestRetryAfter(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		header string
		want   time.Duration
		wantOK bool
	}{
		{name: "empty", header: ""},
		{name: "seconds", header: "1", want: time.Second, wantOK: true},
		{name: "zero", header: "0", want: 0, wantOK: true},
		{name: "two minutes", header: "120", want: 2 * time.Minute, wantOK: true},
		{name: "negative", header: "-1"},
		{name: "fraction", header: "1.5"},
		{name: "garbage", header: "soon"},
		{name: "seconds with unit", header: "10s"},
		{name: "HTTP date", header: now.Add(30 * time.Second).Format(http.TimeFormat), want: 30 * time.Second, wantOK: true},
		{name: "HTTP date in the past", header: now.Add(-time.Hour).Format(http.TimeFormat), want: 0, wantOK: true},
		{name: "RFC 850 date", header: "Sunday, 01-Jun-25 12:00:05 GMT", want: 5 * time.Second, wantOK: true},
		{name: "ANSI C date", header: "Sun Jun  1 12:00:07 2025", want: 7 * time.Second, wantOK: true},
		{name: "date without zone", header: "2025-06-01T12:00:30"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := retryAfter(tt.header, now)
			if ok != tt.wantOK || got != tt.want {
				t.Errorf("retryAfter(%q) = %v, %v; want %v, %v", tt.header, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

// A number of seconds too large for a time.Duration must not wrap around to
// a short (or negative) wait.
func TestRetryAfterHuge(t *testing.T) {
	for _, v := range []string{"10000000000", "9223372036854775807"} {
		got, ok := retryAfter(v, time.Now())
		if ok && got < 24*time.Hour {
			t.Errorf("retryAfter(%q) = %v: wrapped around", v, got)
		}
	}
}

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func TestRetryable(t *testing.T) {
	reset := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	stall := &StallError{Op: "reading body", After: time.Second, Err: context.Canceled}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{name: "nil", err: nil, want: false},
		{name: "unexpected EOF", err: io.ErrUnexpectedEOF, want: true},
		{name: "wrapped unexpected EOF", err: fmt.Errorf("fetching blob: %w", io.ErrUnexpectedEOF), want: true},
		{name: "ECONNRESET", err: syscall.ECONNRESET, want: true},
		{name: "ECONNRESET in a net.OpError", err: reset, want: true},
		{name: "ECONNRESET in a url.Error", err: &url.Error{Op: "Get", URL: "http://x/v2/", Err: reset}, want: true},
		{name: "ECONNREFUSED", err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, want: false},
		{name: "EPIPE", err: fmt.Errorf("write: %w", syscall.EPIPE), want: true},
		{name: "net timeout", err: &url.Error{Op: "Get", URL: "http://x/", Err: timeoutError{}}, want: true},
		{name: "context canceled", err: context.Canceled, want: false},
		{name: "wrapped context canceled", err: &url.Error{Op: "Get", URL: "http://x/", Err: context.Canceled}, want: false},
		{name: "cancelled dial", err: &net.OpError{Op: "dial", Net: "tcp", Err: context.Canceled}, want: false},
		{name: "stall", err: stall, want: true},
		{name: "wrapped stall", err: fmt.Errorf("fetching blob: %w", stall), want: true},
		{name: "plain error", err: errors.New("boom"), want: false},
		{name: "digest mismatch", err: fmt.Errorf("blob: %w", ErrDigestMismatch), want: false},
		{name: "size mismatch", err: fmt.Errorf("blob: %w", ErrSizeMismatch), want: false},
		{name: "registry 404", err: &transport.Error{StatusCode: http.StatusNotFound}, want: false},
		{name: "registry 403", err: &transport.Error{StatusCode: http.StatusForbidden}, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Retryable(tt.err); got != tt.want {
				t.Errorf("Retryable(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestStallErrorUnwraps(t *testing.T) {
	err := fmt.Errorf("x: %w", &StallError{Op: "reading body", After: 200 * time.Millisecond, Err: context.Canceled})
	var se *StallError
	if !errors.As(err, &se) || se.After != 200*time.Millisecond {
		t.Fatalf("errors.As failed on %v", err)
	}
	if !errors.Is(err, context.Canceled) {
		t.Error("StallError does not unwrap to its cause")
	}
	if !strings.Contains(err.Error(), "stalled reading body") {
		t.Errorf("message %q", err)
	}
}

func TestBackoffDelay(t *testing.T) {
	b := Backoff{Attempts: 10, Initial: 100 * time.Millisecond, Max: time.Second}
	tests := []struct {
		attempt  int
		min, max time.Duration
	}{
		{0, 50 * time.Millisecond, 100 * time.Millisecond},
		{1, 100 * time.Millisecond, 200 * time.Millisecond},
		{3, 400 * time.Millisecond, 800 * time.Millisecond},
		{4, 500 * time.Millisecond, time.Second}, // capped
		{62, 500 * time.Millisecond, time.Second},
		{200, 500 * time.Millisecond, time.Second}, // shift overflow
	}
	for _, tt := range tests {
		for range 50 {
			if d := b.delay(tt.attempt); d < tt.min || d > tt.max {
				t.Fatalf("delay(%d) = %v, want in [%v, %v]", tt.attempt, d, tt.min, tt.max)
			}
		}
	}
	if d := (Backoff{Attempts: 1}).delay(0); d != 0 {
		t.Errorf("zero backoff waits %v", d)
	}
}

// scriptedTransport answers with the given statuses in turn (the last one
// repeats) and counts the requests.
type scriptedTransport struct {
	statuses []int
	header   http.Header
	calls    int
}

func (s *scriptedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	status := s.statuses[min(s.calls, len(s.statuses)-1)]
	s.calls++
	h := http.Header{}
	for k, v := range s.header {
		h[k] = v
	}
	return &http.Response{
		StatusCode: status, Status: http.StatusText(status), Header: h,
		Body: io.NopCloser(strings.NewReader("body")), Request: req,
	}, nil
}

func TestRetryTransport(t *testing.T) {
	tests := []struct {
		name       string
		method     string
		statuses   []int
		header     http.Header
		wantCalls  int
		wantStatus int
	}{
		{name: "GET 500 then 200", method: http.MethodGet, statuses: []int{500, 200}, wantCalls: 2, wantStatus: 200},
		{name: "HEAD 503 then 200", method: http.MethodHead, statuses: []int{503, 200}, wantCalls: 2, wantStatus: 200},
		{name: "GET 408 then 200", method: http.MethodGet, statuses: []int{408, 200}, wantCalls: 2, wantStatus: 200},
		{name: "GET 500 always", method: http.MethodGet, statuses: []int{500}, wantCalls: 3, wantStatus: 500},
		{name: "POST 500 not retried", method: http.MethodPost, statuses: []int{500, 200}, wantCalls: 1, wantStatus: 500},
		{name: "PUT 503 not retried", method: http.MethodPut, statuses: []int{503, 200}, wantCalls: 1, wantStatus: 503},
		{name: "GET 404", method: http.MethodGet, statuses: []int{404, 200}, wantCalls: 1, wantStatus: 404},
		{name: "GET 401", method: http.MethodGet, statuses: []int{401, 200}, wantCalls: 1, wantStatus: 401},
		{name: "GET 501 not retried", method: http.MethodGet, statuses: []int{501, 200}, wantCalls: 1, wantStatus: 501},
		{name: "GET 429 Retry-After 0", method: http.MethodGet, statuses: []int{429, 200}, header: http.Header{"Retry-After": {"0"}}, wantCalls: 2, wantStatus: 200},
		{name: "GET 429 Retry-After too long", method: http.MethodGet, statuses: []int{429, 200}, header: http.Header{"Retry-After": {"60"}}, wantCalls: 1, wantStatus: 429},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inner := &scriptedTransport{statuses: tt.statuses, header: tt.header}
			var retries int
			rt := &retryTransport{
				inner:   inner,
				backoff: Backoff{Attempts: 3, Initial: time.Millisecond, Max: 10 * time.Millisecond},
				onRetry: func(*http.Request, int, string, time.Duration) { retries++ },
			}
			req, err := http.NewRequest(tt.method, "http://registry.test/v2/x/manifests/y", nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := rt.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if inner.calls != tt.wantCalls || resp.StatusCode != tt.wantStatus {
				t.Errorf("%d calls ending in %d; want %d ending in %d", inner.calls, resp.StatusCode, tt.wantCalls, tt.wantStatus)
			}
			if retries != tt.wantCalls-1 && tt.method != http.MethodPost && tt.method != http.MethodPut {
				t.Errorf("onRetry called %d times, want %d", retries, tt.wantCalls-1)
			}
		})
	}
}

func TestRedact(t *testing.T) {
	in := `PUT http://127.0.0.1:5000/v2/app/blobs/uploads/1f2e?_state=c2VjcmV0&digest=sha256%3Aabc: unexpected status code 500; GET https://s3.example.com/x?X-Amz-Signature=deadbeef&X-Amz-Credential=AK "https://u:pw@reg.example/v2/"`
	got := Redact(in)
	for _, secret := range []string{"c2VjcmV0", "deadbeef", "AK&", "pw@"} {
		if strings.Contains(got, secret) {
			t.Errorf("%q left in %s", secret, got)
		}
	}
	for _, kept := range []string{"digest=sha256%3Aabc", "/v2/app/blobs/uploads/1f2e", "unexpected status code 500"} {
		if !strings.Contains(got, kept) {
			t.Errorf("%q lost from %s", kept, got)
		}
	}
	err := RedactError(fmt.Errorf("pushing: %w", ErrIntegrity))
	if !errors.Is(err, ErrIntegrity) {
		t.Error("RedactError hides the error chain")
	}
}

func TestRetryableWrite(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&transport.Error{StatusCode: 500}, true},
		{&transport.Error{StatusCode: 503}, true},
		{&transport.Error{StatusCode: 429}, true},
		{&transport.Error{StatusCode: 408}, true},
		{&transport.Error{StatusCode: 401}, false},
		{&transport.Error{StatusCode: 403}, false},
		{&transport.Error{StatusCode: 404}, false},
		{&transport.Error{StatusCode: 400}, false},
		{fmt.Errorf("x: %w", io.ErrUnexpectedEOF), true},
		{fmt.Errorf("x: %w", syscall.ECONNRESET), true},
		{&exhaustedError{err: syscall.ECONNRESET}, false},
		{fmt.Errorf("blob: %w", ErrIntegrity), false},
		{context.Canceled, false},
	} {
		if got := RetryableWrite(tc.err); got != tc.want {
			t.Errorf("RetryableWrite(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

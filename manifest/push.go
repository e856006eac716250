package manifest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Push retry defaults. A blob upload is several requests (HEAD, POST,
// PATCH, PUT) retried as one, so at a 20 % fault rate half the tries fail:
// writes get more tries than reads (DefaultBackoff), all bounded by the
// time budget.
const (
	DefaultPushAttempts = 20
	DefaultRetryBudget  = 5 * time.Minute
)

// WithPushRetries sets how many times each registry write is tried
// (default DefaultPushAttempts) and how long one push may spend retrying
// (default DefaultRetryBudget).
func WithPushRetries(attempts int, budget time.Duration) ClientOption {
	return func(o *clientOptions) { o.pushAttempts, o.retryBudget = attempts, budget }
}

// pushRetry is the retry policy of one push. go-containerregistry runs every
// registry write (each blob's HEAD, POST, PATCH and PUT as one unit, each
// cross-repository mount, each manifest PUT) in its own retry loop, with a
// HEAD first so that a blob already there is never sent again; kiln gives
// those loops its backoff and this predicate.
type pushRetry struct {
	c      *Client
	ctx    context.Context
	start  time.Time
	budget time.Duration

	mu      sync.Mutex
	retries int
}

func (c *Client) newPushRetry(ctx context.Context) *pushRetry {
	return &pushRetry{c: c, ctx: ctx, start: time.Now(), budget: c.o.retryBudget}
}

func (p *pushRetry) options() []remote.Option {
	return []remote.Option{
		remote.WithRetryPredicate(p.retry),
		// The waiting is done in retry, with warm's jittered, capped
		// backoff: go-containerregistry's own ends its loop once a wait
		// reaches the cap, long before the attempts are used up.
		remote.WithRetryBackoff(remote.Backoff{Duration: time.Millisecond, Factor: 1, Steps: p.c.o.pushAttempts}),
		// Reads (HEAD of blobs) are retried by kiln's own transport;
		// go-containerregistry's transport retry would multiply it.
		remote.WithRetryStatusCodes(),
	}
}

// retry says whether to try a failed registry write again, after waiting
// the backoff's delay (the budget permitting).
func (p *pushRetry) retry(err error) bool {
	if !RetryableWrite(err) || time.Since(p.start) > p.budget {
		return false
	}
	p.mu.Lock()
	p.retries++
	n := p.retries
	p.mu.Unlock()
	wait := p.c.o.backoff.delay(min(n-1, 16))
	if left := p.budget - time.Since(p.start); wait > left {
		return false
	}
	p.c.o.log.Warn("retrying a registry write", "retry", n, "wait", wait.Round(time.Millisecond), "reason", Describe(err))
	return sleepCtx(p.ctx, wait) == nil
}

// failed describes a push that gave up: what, the registry's status, how
// many retries it took, and which refs were already pushed (a later tag
// that failed leaves the earlier ones pointing at the new image).
func (p *pushRetry) failed(what string, done []string, err error) error {
	p.mu.Lock()
	n := p.retries
	p.mu.Unlock()
	var notes []string
	var te *transport.Error
	var tlsErr *TLSError
	if errors.As(err, &te) && te.StatusCode != 0 && !errors.As(err, &tlsErr) {
		notes = append(notes, fmt.Sprintf("HTTP %d", te.StatusCode)) // with a TLS failure, a plain-HTTP try's answer
	}
	if n > 0 {
		notes = append(notes, fmt.Sprintf("gave up after %d retries in %s", n, time.Since(p.start).Round(100*time.Millisecond)))
	}
	if len(done) > 0 {
		notes = append(notes, "already pushed: "+strings.Join(done, ", "))
	}
	if len(notes) > 0 {
		what += " (" + strings.Join(notes, "; ") + ")"
	}
	return RedactError(fmt.Errorf("%s: %w", what, err))
}

// RetryableWrite reports whether a failed registry write is worth another
// try: a 5xx, 408 or 429 answer, or a network failure (reset, EOF, stall).
// Refusals (401, 403, 404, a bad digest) and content that does not match
// its digest are final.
func RetryableWrite(err error) bool {
	var ex *exhaustedError
	if err == nil || errors.Is(err, ErrIntegrity) || errors.As(err, &ex) {
		return false
	}
	var te *transport.Error
	if errors.As(err, &te) {
		switch te.StatusCode {
		case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
			http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
		return false
	}
	return Retryable(err)
}

// keptParams are the query parameters of registry URLs that name content,
// not a session or a signature: shown in messages as they are.
var keptParams = map[string]bool{"digest": true, "mount": true, "from": true, "n": true, "last": true, "ns": true}

var urlPattern = regexp.MustCompile(`https?://[^\s"'<>]+`)

// Redact hides the values of query parameters in every URL in s (an upload
// session's _state, a storage backend's signature), keeping those that only
// name content (digest, mount, from), and any password in the URL.
func Redact(s string) string {
	return urlPattern.ReplaceAllStringFunc(s, func(raw string) string {
		u, err := url.Parse(raw)
		if err != nil {
			return "<url>"
		}
		return redactURL(u)
	})
}

func redactURL(u *url.URL) string {
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			if !keptParams[k] {
				q[k] = []string{"REDACTED"}
			}
		}
		c := *u
		c.RawQuery = q.Encode()
		u = &c
	}
	return u.Redacted()
}

// redactedError shows err with Redact applied; errors.Is and errors.As see
// err.
type redactedError struct{ err error }

func (e *redactedError) Error() string { return Redact(readableRegistryErrors(e.err)) }

// readableRegistryErrors is err's message with a registry's error document
// spelled for people: go-containerregistry prints a diagnostic's detail
// with %v, which shows Go maps ("map[Tag:1]"); here it is JSON, and the
// HTTP status is named.
func readableRegistryErrors(err error) string {
	msg := tlsFirst(err)
	var te *transport.Error
	if !errors.As(err, &te) || len(te.Errors) == 0 {
		return msg
	}
	var parts []string
	for _, d := range te.Errors {
		p := string(d.Code) + ": " + d.Message
		if d.Detail != nil {
			if b, jerr := json.Marshal(d.Detail); jerr == nil && string(b) != "null" && string(b) != `""` {
				p += " (" + string(b) + ")"
			}
		}
		parts = append(parts, p)
	}
	readable := strings.Join(parts, "; ")
	if te.StatusCode != 0 {
		readable += fmt.Sprintf(" [HTTP %d]", te.StatusCode)
	}
	// Keep go-containerregistry's "METHOD URL: " prefix, replace the rest.
	full, prefix := te.Error(), ""
	if i := strings.Index(full, ": "); te.Request != nil && i >= 0 {
		prefix = full[:i+2]
	}
	return strings.Replace(msg, full, prefix+readable, 1)
}
func (e *redactedError) Unwrap() error { return e.err }

// tlsFirst is err's message, ending after a TLS failure that another
// failure follows: go-containerregistry pings a loopback or private
// registry over https and plain HTTP and reports both, and what the plain
// try got ("HTTP request to an HTTPS server", or the same TLS refusal) only
// repeats the TLS failure, which says how to fix it.
func tlsFirst(err error) string {
	msg := err.Error()
	var tlsErr *TLSError
	if !errors.As(err, &tlsErr) {
		return msg
	}
	text := tlsErr.Error()
	if i := strings.Index(msg, text); i >= 0 && strings.HasPrefix(msg[i+len(text):], "; ") {
		return msg[:i+len(text)]
	}
	return msg
}

// Describe is err's message for people: registry error documents made
// readable, and no session token or signature.
func Describe(err error) string { return Redact(readableRegistryErrors(err)) }

// RedactError wraps err so that its message carries no session token.
func RedactError(err error) error {
	if err == nil {
		return nil
	}
	return &redactedError{err: err}
}

// CheckPush makes sure, before any work, that every repository of refs
// takes a push with these credentials: the token handshake with push scope
// and an upload session started and cancelled, as kaniko's push-permission
// check does (a registry may hand out a token and refuse the upload). A
// refusal is final at once; a flaky registry is retried like a push.
func (c *Client) CheckPush(ctx context.Context, refs []name.Reference) error {
	seen := map[string]bool{}
	for _, ref := range refs {
		ref = c.withAccess(ref, Push)
		repo := ref.Context()
		if seen[repo.Name()] {
			continue
		}
		seen[repo.Name()] = true
		pr := c.newPushRetry(ctx)
		var err error
		for attempt := 0; ; attempt++ {
			if err = ctx.Err(); err != nil {
				return err
			}
			err = remote.CheckPushPermission(ref, c.o.keychain, c.transportFor(repo.Registry, Push))
			if err == nil || attempt+1 >= c.o.pushAttempts || !pr.retry(err) {
				break
			}
		}
		if err != nil {
			return RedactError(fmt.Errorf("%w: %s: %w%s", ErrPushAccess, repo, err, credentialsHint(err)))
		}
	}
	return nil
}

// ErrPushAccess marks a destination that refused the push check.
var ErrPushAccess = errors.New("no push access")

// credentialsHint says where kiln looked for credentials, for a refusal.
func credentialsHint(err error) string {
	var te *transport.Error
	if !errors.As(err, &te) || te.StatusCode != http.StatusUnauthorized && te.StatusCode != http.StatusForbidden {
		return ""
	}
	return " (credentials are read from " + dockerConfigPath() + "; set DOCKER_CONFIG to the folder holding config.json — in a pod, where the registry Secret is mounted, as kaniko's /kaniko/.docker)"
}

// dockerConfigPath is the Docker config file the default keychain reads,
// and whether it exists.
func dockerConfigPath() string {
	dir := os.Getenv("DOCKER_CONFIG")
	how := "DOCKER_CONFIG"
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir, how = filepath.Join(home, ".docker"), "the default"
	}
	p := filepath.Join(dir, "config.json")
	if _, err := os.Stat(p); err != nil {
		return p + " (" + how + ", which does not exist)"
	}
	return p + " (" + how + ")"
}

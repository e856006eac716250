package manifest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"golang.org/x/sync/singleflight"
)

// RegistryConfig is what kiln knows about one registry.
type RegistryConfig struct {
	// Insecure allows plain HTTP and unverified TLS.
	Insecure bool
	// SkipTLSVerify speaks TLS without checking the registry's certificate.
	SkipTLSVerify bool
	// CA is PEM certificates trusted for this registry besides the system's
	// roots (ReadCA reads and checks a file of them).
	CA []byte
	// ClientCert is presented when the registry asks for one: mutual TLS
	// (ReadClientCert loads one).
	ClientCert *tls.Certificate
	// Mirrors are tried in order before the registry itself, for pulls only.
	// Each is host[:port] optionally followed by a path prefix.
	Mirrors []string
}

// Client talks to registries for pulls: manifests, HEADs and blobs, with
// each registry's settings, credentials from a keychain, retries and mirrors.
type Client struct {
	o          clientOptions
	registries map[string]RegistryConfig // keyed by canonical registry name

	tlsConfigs map[string]*tls.Config // by registry: its CA and client certificate

	mu       sync.Mutex
	authd    map[string]http.RoundTripper // authenticated transports by registry+repo
	tlsBases map[string]http.RoundTripper // base transports with TLS settings (see baseFor)

	handshakes singleflight.Group // one ping+token per repository at a time
}

type clientOptions struct {
	keychain     authn.Keychain
	registries   map[string]RegistryConfig
	base         http.RoundTripper
	backoff      Backoff
	stall        time.Duration
	retryBudget  time.Duration
	pushAttempts int
	userAgent    string
	log          *slog.Logger
	insecure     Access // plain HTTP allowed to every registry for these
	skipVerify   Access // TLS unverified with every registry for these
	noFallback   bool   // pulls ask a registry's mirrors only
}

// ClientOption configures a Client.
type ClientOption func(*clientOptions)

// WithKeychain sets where credentials come from (default: the Docker config,
// $DOCKER_CONFIG or ~/.docker/config.json, as a Kubernetes dockerconfigjson
// secret mounts it).
func WithKeychain(k authn.Keychain) ClientOption { return func(o *clientOptions) { o.keychain = k } }

// WithRegistries sets per-registry settings, keyed by host[:port] as a user
// writes it ("docker.io" and "index.docker.io" are the same).
func WithRegistries(m map[string]RegistryConfig) ClientOption {
	return func(o *clientOptions) { o.registries = m }
}

// WithBaseTransport replaces the HTTP transport under retries and auth.
func WithBaseTransport(t http.RoundTripper) ClientOption {
	return func(o *clientOptions) { o.base = t }
}

// WithBackoff sets the retry policy.
func WithBackoff(b Backoff) ClientOption { return func(o *clientOptions) { o.backoff = b } }

// WithStallTimeout sets how long a transfer may make no progress before it
// is cut off and retried (default 60s).
func WithStallTimeout(d time.Duration) ClientOption { return func(o *clientOptions) { o.stall = d } }

// WithUserAgent sets the User-Agent sent to registries.
func WithUserAgent(ua string) ClientOption { return func(o *clientOptions) { o.userAgent = ua } }

// WithClientLogger receives a line for every retry (default: discard).
func WithClientLogger(l *slog.Logger) ClientOption { return func(o *clientOptions) { o.log = l } }

// NewClient makes a Client.
func NewClient(opts ...ClientOption) (*Client, error) {
	o := clientOptions{
		keychain:     authn.DefaultKeychain,
		backoff:      DefaultBackoff,
		stall:        60 * time.Second,
		retryBudget:  DefaultRetryBudget,
		pushAttempts: DefaultPushAttempts,
		userAgent:    "kiln",
		log:          slog.New(slog.DiscardHandler),
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.pushAttempts < 1 {
		return nil, fmt.Errorf("push retries: attempts must be at least 1, got %d", o.pushAttempts)
	}
	if o.backoff.Attempts < 1 {
		return nil, fmt.Errorf("backoff: attempts must be at least 1, got %d", o.backoff.Attempts)
	}
	c := &Client{o: o, registries: map[string]RegistryConfig{}, authd: map[string]http.RoundTripper{},
		tlsConfigs: map[string]*tls.Config{}, tlsBases: map[string]http.RoundTripper{}}
	for host, rc := range o.registries {
		reg, err := name.NewRegistry(host)
		if err != nil {
			return nil, fmt.Errorf("registry %q: %w", host, err)
		}
		c.registries[reg.Name()] = rc
		cfg, err := newTLSConfig(rc)
		if err != nil {
			return nil, fmt.Errorf("registry %q: %w", host, err)
		}
		if cfg != nil {
			c.tlsConfigs[reg.Name()] = cfg
		}
	}
	if c.o.base == nil {
		c.o.base = newBaseTransport()
	}
	return c, nil
}

func newBaseTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   32,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   15 * time.Second,
		ExpectContinueTimeout: time.Second,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
	}
}

// transportFor is the retrying transport for a registry's traffic a.
func (c *Client) transportFor(reg name.Registry, a Access) http.RoundTripper {
	return &retryTransport{inner: c.baseFor(reg, a), backoff: c.o.backoff, stall: c.o.stall, onRetry: c.logRetry}
}

func (c *Client) logRetry(req *http.Request, attempt int, reason string, wait time.Duration) {
	c.o.log.Warn("retrying", "method", req.Method, "url", redactURL(req.URL), "attempt", attempt, "reason", Redact(reason), "wait", wait.Round(time.Millisecond))
}

func (c *Client) registryConfig(reg name.Registry) RegistryConfig {
	return c.registries[reg.Name()]
}

// ParseReference parses an image reference, applying the registry's insecure
// setting (pulls and pushes apply WithInsecure's as they go).
func (c *Client) ParseReference(s string) (name.Reference, error) {
	ref, err := name.ParseReference(s)
	if err != nil {
		return nil, err
	}
	if c.registryConfig(ref.Context().Registry).Insecure {
		return name.ParseReference(s, name.Insecure)
	}
	return ref, nil
}

// Source is where a pull was served from: the reference's own repository or
// one of its mirrors.
type Source struct {
	Repo   name.Repository
	Mirror bool
}

// candidates lists the repositories to try for ref, mirrors first, the
// registry itself last unless WithoutMirrorFallback leaves it out.
func (c *Client) candidates(ref name.Reference) []Source {
	repo := c.withAccess(ref, Pull).Context()
	var out []Source
	for _, m := range c.registryConfig(repo.Registry).Mirrors {
		host, prefix, _ := strings.Cut(m, "/")
		opts := []name.Option{}
		if c.insecure(mustRegistry(host), Pull) || isLoopback(host) {
			opts = append(opts, name.Insecure)
		}
		path := repo.RepositoryStr()
		if prefix != "" {
			path = strings.Trim(prefix, "/") + "/" + path
		}
		mr, err := name.NewRepository(host+"/"+path, opts...)
		if err != nil {
			continue
		}
		out = append(out, Source{Repo: mr, Mirror: true})
	}
	if len(out) > 0 && c.o.noFallback {
		return out
	}
	return append(out, Source{Repo: repo})
}

func mustRegistry(host string) name.Registry {
	r, err := name.NewRegistry(host)
	if err != nil {
		return name.Registry{}
	}
	return r
}

func isLoopback(host string) bool {
	h, _, err := net.SplitHostPort(host)
	if err != nil {
		h = host
	}
	ip := net.ParseIP(h)
	return h == "localhost" || ip != nil && ip.IsLoopback()
}

// RemoteOptions are the go-containerregistry options that make remote.*
// calls on repo use this client's transport, credentials and retries. The
// registry handshake (ping, token) is done once per repository and reused.
func (c *Client) RemoteOptions(ctx context.Context, repo name.Repository) ([]remote.Option, error) {
	rt, err := c.authTransport(ctx, repo)
	if err != nil {
		return nil, err
	}
	return []remote.Option{
		remote.WithContext(ctx),
		// A *transport.Wrapper: ggcr adds no auth, retry or ping of its own.
		remote.WithTransport(rt),
	}, nil
}

// Head resolves ref to a descriptor with one HEAD request (mirrors first).
func (c *Client) Head(ctx context.Context, ref name.Reference) (*v1.Descriptor, Source, error) {
	var firstErr error
	for _, src := range c.candidates(ref) {
		desc, err := c.head(ctx, retarget(ref, src.Repo))
		if err == nil {
			return desc, src, nil
		}
		if firstErr == nil || !src.Mirror {
			firstErr = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, Source{}, fmt.Errorf("resolving %s%s: %w", ref, c.fallbackNote(ref), firstErr)
}

// Get fetches ref's manifest or index (mirrors first).
func (c *Client) Get(ctx context.Context, ref name.Reference) (*remote.Descriptor, Source, error) {
	var lastErr error
	for _, src := range c.candidates(ref) {
		desc, err := c.get(ctx, retarget(ref, src.Repo))
		if err == nil {
			return desc, src, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, Source{}, fmt.Errorf("fetching %s%s: %w", ref, c.fallbackNote(ref), lastErr)
}

// fallbackNote says, for an error, that ref's registry was not asked.
func (c *Client) fallbackNote(ref name.Reference) string {
	mirrors := c.registryConfig(ref.Context().Registry).Mirrors
	if !c.o.noFallback || len(mirrors) == 0 {
		return ""
	}
	return fmt.Sprintf(" on its mirrors (%s; %s itself is not asked: no fallback)", strings.Join(mirrors, ", "), ref.Context().RegistryStr())
}

func (c *Client) head(ctx context.Context, ref name.Reference) (*v1.Descriptor, error) {
	ref = c.withAccess(ref, Pull)
	opts, err := c.RemoteOptions(ctx, ref.Context())
	if err != nil {
		return nil, err
	}
	return remote.Head(ref, opts...)
}

func (c *Client) get(ctx context.Context, ref name.Reference) (*remote.Descriptor, error) {
	ref = c.withAccess(ref, Pull)
	opts, err := c.RemoteOptions(ctx, ref.Context())
	if err != nil {
		return nil, err
	}
	return remote.Get(ref, opts...)
}

// retarget points ref at another repository, keeping its tag or digest.
func retarget(ref name.Reference, repo name.Repository) name.Reference {
	if repo == ref.Context() {
		return ref
	}
	if d, ok := ref.(name.Digest); ok {
		return repo.Digest(d.DigestStr())
	}
	return repo.Tag(ref.Identifier())
}

// IsNotFound reports whether err is a registry's "no such manifest/blob/repo"
// or a refusal (401, 403): failures that retrying cannot fix.
func IsNotFound(err error) bool {
	var te *transport.Error
	if errors.As(err, &te) {
		switch te.StatusCode {
		case http.StatusNotFound, http.StatusUnauthorized, http.StatusForbidden:
			return true
		}
	}
	return false
}

// authTransport returns a transport authenticated for pulls from repo,
// made once per repository: one ping and one token for a whole run.
func (c *Client) authTransport(ctx context.Context, repo name.Repository) (http.RoundTripper, error) {
	repo = c.repoFor(repo, Pull) // the ping tries plain HTTP too where pulls may use it
	key := repo.Name()
	v, err, _ := c.handshakes.Do(key, func() (any, error) {
		c.mu.Lock()
		rt, ok := c.authd[key]
		c.mu.Unlock()
		if ok {
			return rt, nil
		}
		auth, err := c.o.keychain.Resolve(repo)
		if err != nil {
			return nil, fmt.Errorf("credentials for %s: %w", repo.RegistryStr(), err)
		}
		inner := transport.NewUserAgent(c.transportFor(repo.Registry, Pull), c.o.userAgent)
		rt, err = transport.NewWithContext(ctx, repo.Registry, auth, inner, []string{repo.Scope(transport.PullScope)})
		if err != nil {
			return nil, fmt.Errorf("authenticating to %s: %w", repo.RegistryStr(), err)
		}
		c.mu.Lock()
		c.authd[key] = rt
		c.mu.Unlock()
		return rt, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(http.RoundTripper), nil
}

// FetchBlob streams blob desc from the first source that serves it into w,
// resuming with Range requests after a broken or stalled transfer. progress,
// if not nil, is called with each chunk's size as it arrives.
func (c *Client) FetchBlob(ctx context.Context, sources []Source, desc v1.Descriptor, w *BlobWriter, progress func(int64)) error {
	var lastErr error
	for _, src := range sources {
		err := c.fetchBlobFrom(ctx, src.Repo, desc, w, progress)
		if err == nil {
			return nil
		}
		lastErr = err
		if ctx.Err() != nil {
			return err
		}
		if err := w.Reset(); err != nil {
			return err
		}
	}
	return lastErr
}

func (c *Client) fetchBlobFrom(ctx context.Context, repo name.Repository, desc v1.Descriptor, w *BlobWriter, progress func(int64)) error {
	rt, err := c.authTransport(ctx, repo)
	if err != nil {
		return err
	}
	client := &http.Client{Transport: rt}
	url := fmt.Sprintf("%s://%s/v2/%s/blobs/%s", repo.Scheme(), repo.RegistryStr(), repo.RepositoryStr(), desc.Digest)
	for attempt := 0; ; attempt++ {
		err := c.fetchRange(ctx, client, url, desc, w, progress)
		if err == nil {
			return nil
		}
		if !Retryable(err) || attempt+1 >= c.o.backoff.Attempts || ctx.Err() != nil {
			return fmt.Errorf("fetching blob %s from %s: %w", desc.Digest, repo, err)
		}
		wait := c.o.backoff.delay(attempt)
		c.o.log.Warn("resuming blob", "digest", desc.Digest.String(), "repo", repo.String(), "at", w.Written(), "of", desc.Size, "reason", err.Error(), "wait", wait.Round(time.Millisecond))
		if err := sleepCtx(ctx, wait); err != nil {
			return err
		}
	}
}

// fetchRange sends one GET for the bytes w still lacks and copies them in.
func (c *Client) fetchRange(ctx context.Context, client *http.Client, url string, desc v1.Descriptor, w *BlobWriter, progress func(int64)) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	offset := w.Written()
	if offset > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", offset))
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusPartialContent && offset > 0 && rangeStart(resp) == offset:
	case resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusPartialContent:
		// A full body, or a range we did not ask for: start over.
		if offset > 0 {
			if err := w.Reset(); err != nil {
				return err
			}
			if progress != nil {
				progress(-offset)
			}
		}
		if resp.StatusCode == http.StatusPartialContent {
			return fmt.Errorf("server answered Range bytes=%d- with %q: %w", offset, resp.Header.Get("Content-Range"), io.ErrUnexpectedEOF)
		}
	default:
		return transport.CheckError(resp, http.StatusOK)
	}
	_, err = io.Copy(w, &progressReader{r: resp.Body, fn: progress})
	if err != nil {
		if desc.Size >= 0 && w.Written() == desc.Size && !errors.Is(err, ErrSizeMismatch) {
			return nil // every byte arrived; the framing broke after. Commit checks the digest.
		}
		return err
	}
	if desc.Size >= 0 && w.Written() < desc.Size {
		return io.ErrUnexpectedEOF
	}
	return nil
}

type progressReader struct {
	r  io.Reader
	fn func(int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 && p.fn != nil {
		p.fn(int64(n))
	}
	return n, err
}

// rangeStart is the first byte of a 206 response's Content-Range, or -1.
func rangeStart(resp *http.Response) int64 {
	var start, end, total int64
	cr := resp.Header.Get("Content-Range")
	if _, err := fmt.Sscanf(cr, "bytes %d-%d/%d", &start, &end, &total); err == nil {
		return start
	}
	if _, err := fmt.Sscanf(cr, "bytes %d-%d/*", &start, &end); err == nil {
		return start
	}
	return -1
}

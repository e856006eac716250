package manifest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// faultFunc may answer a request instead of the registry; n counts the
// requests of the same method and kind so far, this one included.
type faultFunc func(w http.ResponseWriter, r *http.Request, n int) bool

// testRegistry is go-containerregistry's in-memory registry behind an
// http.Handler that counts requests and injects faults.
type testRegistry struct {
	host  string
	srv   *httptest.Server
	inner http.Handler

	mu     sync.Mutex
	fault  faultFunc
	counts map[string]int // "GET manifests", "HEAD blobs", ...
	ranges []string       // Range header of every blob GET ("" if none)
}

func newTestRegistry(t *testing.T) *testRegistry {
	t.Helper()
	r := &testRegistry{inner: registry.New(registry.Logger(discardLogger())), counts: map[string]int{}}
	r.srv = httptest.NewServer(r)
	t.Cleanup(r.srv.Close)
	r.host = strings.TrimPrefix(r.srv.URL, "http://")
	return r
}

func (r *testRegistry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	key := req.Method + " " + requestKind(req.URL.Path)
	r.mu.Lock()
	r.counts[key]++
	n := r.counts[key]
	if key == "GET blobs" {
		r.ranges = append(r.ranges, req.Header.Get("Range"))
	}
	fault := r.fault
	r.mu.Unlock()
	if fault != nil && fault(w, req, n) {
		return
	}
	r.inner.ServeHTTP(w, req)
}

func requestKind(path string) string {
	switch {
	case path == "/v2/" || path == "/v2":
		return "ping"
	case strings.Contains(path, "/manifests/"):
		return "manifests"
	case strings.Contains(path, "/blobs/uploads"):
		return "uploads"
	case strings.Contains(path, "/blobs/"):
		return "blobs"
	}
	return "other"
}

// setFault installs f and forgets the requests counted so far.
func (r *testRegistry) setFault(f faultFunc) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fault = f
	r.counts = map[string]int{}
	r.ranges = nil
}

func (r *testRegistry) count(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.counts[key]
}

func (r *testRegistry) rangesSeen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.ranges...)
}

// push stores a random image in the registry as host/repo:tag.
func (r *testRegistry) push(t *testing.T, repoTag string) v1.Image {
	t.Helper()
	ref, err := name.ParseReference(r.host+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img := randomImage(t)
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	return img
}

func discardLogger() *log.Logger { return log.New(io.Discard, "", 0) }

// syncBuffer collects a client's retry log for failure messages.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var testBackoff = Backoff{Attempts: 5, Initial: time.Millisecond, Max: 2 * time.Second}

// newTestClient makes a client that trusts no credentials file and treats
// every host given as an insecure (plain HTTP) registry.
func newTestClient(t *testing.T, regs map[string]RegistryConfig, opts ...ClientOption) *Client {
	t.Helper()
	logs := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("client log:\n%s", logs)
		}
	})
	base := []ClientOption{
		WithRegistries(regs),
		WithKeychain(authn.NewMultiKeychain()),
		WithBackoff(testBackoff),
		WithClientLogger(slog.New(slog.NewTextHandler(logs, nil))),
	}
	c, err := NewClient(append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func insecure(hosts ...string) map[string]RegistryConfig {
	m := map[string]RegistryConfig{}
	for _, h := range hosts {
		m[h] = RegistryConfig{Insecure: true}
	}
	return m
}

func parseRef(t *testing.T, c *Client, s string) name.Reference {
	t.Helper()
	ref, err := c.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// resolve runs Head or Get and returns the digest found.
func resolve(ctx context.Context, c *Client, op string, ref name.Reference) (v1.Hash, Source, error) {
	if op == http.MethodHead {
		d, src, err := c.Head(ctx, ref)
		if err != nil {
			return v1.Hash{}, src, err
		}
		return d.Digest, src, nil
	}
	d, src, err := c.Get(ctx, ref)
	if err != nil {
		return v1.Hash{}, src, err
	}
	return d.Digest, src, nil
}

// failManifest answers the first len(statuses) manifest requests of method
// with the given statuses (0: let the registry answer).
func failManifest(method string, statuses []int, retryAfter string) faultFunc {
	return func(w http.ResponseWriter, r *http.Request, n int) bool {
		if r.Method != method || requestKind(r.URL.Path) != "manifests" || n > len(statuses) || statuses[n-1] == 0 {
			return false
		}
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(statuses[n-1])
		if r.Method != http.MethodHead {
			fmt.Fprintf(w, `{"errors":[{"code":"UNKNOWN","message":"injected %d"}]}`, statuses[n-1])
		}
		return true
	}
}

func TestClientRetries(t *testing.T) {
	tests := []struct {
		name         string
		statuses     []int
		retryAfter   string
		wantErr      bool
		wantNotFound bool
		wantCalls    int
		minElapsed   time.Duration
		maxElapsed   time.Duration // 0: no bound
	}{
		{name: "500 twice then ok", statuses: []int{500, 500}, wantCalls: 3},
		{name: "502 503 504 then ok", statuses: []int{502, 503, 504}, wantCalls: 4},
		{name: "429 with Retry-After 1", statuses: []int{429}, retryAfter: "1", wantCalls: 2, minElapsed: time.Second},
		{name: "429 without Retry-After", statuses: []int{429}, wantCalls: 2},
		{name: "429 asking longer than Max", statuses: []int{429}, retryAfter: "3600", wantErr: true, wantCalls: 1, maxElapsed: 30 * time.Second},
		{name: "500 every time", statuses: []int{500, 500, 500, 500, 500, 500, 500}, wantErr: true, wantCalls: testBackoff.Attempts},
		{name: "404", statuses: []int{404}, wantErr: true, wantNotFound: true, wantCalls: 1},
		{name: "401", statuses: []int{401}, wantErr: true, wantNotFound: true, wantCalls: 1},
		{name: "403", statuses: []int{403}, wantErr: true, wantNotFound: true, wantCalls: 1},
		{name: "400", statuses: []int{400}, wantErr: true, wantCalls: 1},
	}
	reg := newTestRegistry(t)
	img := reg.push(t, "test/img:v1")
	want, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	c := newTestClient(t, insecure(reg.host))
	ref := parseRef(t, c, reg.host+"/test/img:v1")
	for _, op := range []string{http.MethodHead, http.MethodGet} {
		for _, tt := range tests {
			t.Run(op+" "+tt.name, func(t *testing.T) {
				reg.setFault(failManifest(op, tt.statuses, tt.retryAfter))
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				start := time.Now()
				got, src, err := resolve(ctx, c, op, ref)
				elapsed := time.Since(start)
				if (err != nil) != tt.wantErr {
					t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
				}
				if IsNotFound(err) != tt.wantNotFound {
					t.Errorf("IsNotFound(%v) = %v, want %v", err, !tt.wantNotFound, tt.wantNotFound)
				}
				if n := reg.count(op + " manifests"); n != tt.wantCalls {
					t.Errorf("%d manifest requests, want %d", n, tt.wantCalls)
				}
				if elapsed < tt.minElapsed {
					t.Errorf("took %v, want at least %v (Retry-After)", elapsed, tt.minElapsed)
				}
				if tt.maxElapsed > 0 && elapsed > tt.maxElapsed {
					t.Errorf("took %v, want under %v", elapsed, tt.maxElapsed)
				}
				if err == nil && (got != want || src.Mirror || src.Repo.RegistryStr() != reg.host) {
					t.Errorf("got %s from %+v, want %s from %s", got, src, want, reg.host)
				}
			})
		}
	}
}

func TestClientRetryEndsWithContext(t *testing.T) {
	reg := newTestRegistry(t)
	reg.push(t, "test/img:v1")
	c := newTestClient(t, insecure(reg.host), WithBackoff(Backoff{Attempts: 100, Initial: time.Second, Max: time.Minute}))
	reg.setFault(failManifest(http.MethodGet, slicesRepeat(503, 100), ""))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, err := c.Get(ctx, parseRef(t, c, reg.host+"/test/img:v1"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want DeadlineExceeded", err)
	}
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Errorf("gave up after %v; the context ended at 300ms", elapsed)
	}
}

func slicesRepeat(v, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = v
	}
	return out
}

func TestMirrors(t *testing.T) {
	tests := []struct {
		name           string
		mirrorHas      string // where the mirror holds the image ("" none)
		prefix         string // mirror path prefix in the config
		mirrorFault    faultFunc
		mirrorDown     bool
		wantMirror     bool
		wantMirrorReqs int // manifest requests the mirror saw (-1: don't check)
	}{
		{name: "mirror serves", mirrorHas: "test/img:v1", wantMirror: true, wantMirrorReqs: 1},
		{name: "mirror with prefix serves", mirrorHas: "cache/test/img:v1", prefix: "/cache", wantMirror: true, wantMirrorReqs: 1},
		{name: "mirror 404s", wantMirrorReqs: 1},
		{name: "mirror 500s", mirrorHas: "test/img:v1", mirrorFault: func(w http.ResponseWriter, r *http.Request, _ int) bool {
			if requestKind(r.URL.Path) != "manifests" {
				return false
			}
			w.WriteHeader(http.StatusInternalServerError)
			return true
		}, wantMirrorReqs: testBackoff.Attempts},
		{name: "mirror down", mirrorDown: true, wantMirrorReqs: -1},
	}
	for _, op := range []string{http.MethodHead, http.MethodGet} {
		for _, tt := range tests {
			t.Run(op+" "+tt.name, func(t *testing.T) {
				origin := newTestRegistry(t)
				img := origin.push(t, "test/img:v1")
				want, err := img.Digest()
				if err != nil {
					t.Fatal(err)
				}
				mirror := newTestRegistry(t)
				if tt.mirrorHas != "" {
					ref, err := name.ParseReference(mirror.host+"/"+tt.mirrorHas, name.Insecure)
					if err != nil {
						t.Fatal(err)
					}
					if err := remote.Write(ref, img); err != nil {
						t.Fatal(err)
					}
				}
				if tt.mirrorDown {
					mirror.srv.Close()
				}
				origin.setFault(nil)
				mirror.setFault(tt.mirrorFault)
				regs := insecure(origin.host, mirror.host)
				regs[origin.host] = RegistryConfig{Insecure: true, Mirrors: []string{mirror.host + tt.prefix}}
				c := newTestClient(t, regs)
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()

				got, src, err := resolve(ctx, c, op, parseRef(t, c, origin.host+"/test/img:v1"))
				if err != nil {
					t.Fatal(err)
				}
				if got != want {
					t.Errorf("digest %s, want %s", got, want)
				}
				if src.Mirror != tt.wantMirror {
					t.Errorf("served from %s (mirror %v), want mirror %v", src.Repo, src.Mirror, tt.wantMirror)
				}
				wantHost := origin.host
				if tt.wantMirror {
					wantHost = mirror.host
				}
				if src.Repo.RegistryStr() != wantHost {
					t.Errorf("source %s, want host %s", src.Repo, wantHost)
				}
				if tt.wantMirror {
					if n := origin.count(op + " manifests"); n != 0 {
						t.Errorf("origin asked %d times for the manifest the mirror has", n)
					}
					if wantRepo := strings.TrimPrefix(tt.prefix+"/test/img", "/"); src.Repo.RepositoryStr() != wantRepo {
						t.Errorf("mirror repository %q, want %q", src.Repo.RepositoryStr(), wantRepo)
					}
				} else if n := origin.count(op + " manifests"); n != 1 {
					t.Errorf("origin asked %d times, want 1", n)
				}
				if n := mirror.count(op + " manifests"); tt.wantMirrorReqs >= 0 && n != tt.wantMirrorReqs {
					t.Errorf("mirror asked %d times, want %d", n, tt.wantMirrorReqs)
				}
			})
		}
	}
}

func TestMirrorErrorsDoNotHideOrigin(t *testing.T) {
	origin := newTestRegistry(t)
	mirror := newTestRegistry(t)
	regs := insecure(origin.host, mirror.host)
	regs[origin.host] = RegistryConfig{Insecure: true, Mirrors: []string{mirror.host}}
	c := newTestClient(t, regs)
	origin.setFault(failManifest(http.MethodHead, []int{http.StatusForbidden}, ""))
	_, _, err := c.Head(context.Background(), parseRef(t, c, origin.host+"/test/none:v1"))
	var te *transport.Error
	if !errors.As(err, &te) || te.StatusCode != http.StatusForbidden {
		t.Errorf("Head error %v; want the origin's 403, not the mirror's 404", err)
	}
}

// blob is random bytes served by a fault handler rather than the registry,
// so that tests control every byte on the wire.
type blob struct {
	data []byte
	desc v1.Descriptor
}

func newBlob(t *testing.T, size int) blob {
	t.Helper()
	data := make([]byte, size)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	return blob{data: data, desc: v1.Descriptor{MediaType: types.OCILayer, Digest: sha256Of(data), Size: int64(size)}}
}

// serve answers a blob GET honouring an open-ended Range ("bytes=N-").
// (The in-memory registry only understands "bytes=N-M".)
func (b blob) serve(w http.ResponseWriter, r *http.Request) {
	start := 0
	if rg := r.Header.Get("Range"); rg != "" {
		n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(rg, "bytes="), "-"))
		if err != nil || n < 0 || n >= len(b.data) {
			w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
			return
		}
		start = n
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(b.data)-start))
	w.Header().Set("Docker-Content-Digest", b.desc.Digest.String())
	if start > 0 {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, len(b.data)-1, len(b.data)))
		w.WriteHeader(http.StatusPartialContent)
	} else {
		w.WriteHeader(http.StatusOK)
	}
	w.Write(b.data[start:])
}

// serveHalf sends the headers of the whole blob and its first half, then
// breaks the connection: with a reset (RST) or a plain close.
func (b blob) serveHalf(t *testing.T, w http.ResponseWriter, reset bool) {
	w.Header().Set("Content-Length", strconv.Itoa(len(b.data)))
	w.WriteHeader(http.StatusOK)
	w.Write(b.data[:len(b.data)/2])
	w.(http.Flusher).Flush()
	conn, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		t.Errorf("hijack: %v", err)
		return
	}
	buf.Flush()
	if tcp, ok := conn.(*net.TCPConn); ok && reset {
		tcp.SetLinger(0) // close sends RST
	}
	conn.Close()
}

func TestFetchBlob(t *testing.T) {
	b := newBlob(t, 256<<10)
	bad := newBlob(t, len(b.data))
	isBlobGet := func(r *http.Request) bool { return r.Method == http.MethodGet && requestKind(r.URL.Path) == "blobs" }
	tests := []struct {
		name      string
		fault     func(t *testing.T) faultFunc
		stall     time.Duration
		wantErr   bool
		wantCalls int
		wantRange bool          // some request after the first asked for a Range
		maxTime   time.Duration // 0: no bound
	}{
		{name: "clean", wantCalls: 1, fault: func(*testing.T) faultFunc {
			return func(w http.ResponseWriter, r *http.Request, _ int) bool {
				if !isBlobGet(r) {
					return false
				}
				b.serve(w, r)
				return true
			}
		}},
		{name: "closed mid-body resumes with Range", wantCalls: 2, wantRange: true, fault: func(t *testing.T) faultFunc {
			return func(w http.ResponseWriter, r *http.Request, n int) bool {
				if !isBlobGet(r) {
					return false
				}
				if n == 1 {
					b.serveHalf(t, w, false)
				} else {
					b.serve(w, r)
				}
				return true
			}
		}},
		{name: "reset mid-body", wantCalls: -1, fault: func(t *testing.T) faultFunc {
			return func(w http.ResponseWriter, r *http.Request, n int) bool {
				if !isBlobGet(r) {
					return false
				}
				if n == 1 {
					b.serveHalf(t, w, true)
				} else {
					b.serve(w, r)
				}
				return true
			}
		}},
		{name: "server ignores Range", wantCalls: 2, wantRange: true, fault: func(t *testing.T) faultFunc {
			return func(w http.ResponseWriter, r *http.Request, n int) bool {
				if !isBlobGet(r) {
					return false
				}
				if n == 1 {
					b.serveHalf(t, w, false)
					return true
				}
				r.Header.Del("Range")
				b.serve(w, r) // 200 and the whole blob
				return true
			}
		}},
		{name: "stalled body resumes", stall: 200 * time.Millisecond, wantCalls: 2, wantRange: true, maxTime: 4 * time.Second, fault: func(*testing.T) faultFunc {
			return func(w http.ResponseWriter, r *http.Request, n int) bool {
				if !isBlobGet(r) {
					return false
				}
				if n > 1 {
					b.serve(w, r)
					return true
				}
				w.Header().Set("Content-Length", strconv.Itoa(len(b.data)))
				w.WriteHeader(http.StatusOK)
				w.Write(b.data[:len(b.data)/2])
				w.(http.Flusher).Flush()
				select {
				case <-time.After(5 * time.Second):
				case <-r.Context().Done():
				}
				return true
			}
		}},
		{name: "stalled headers", stall: 200 * time.Millisecond, wantCalls: 2, maxTime: 4 * time.Second, fault: func(*testing.T) faultFunc {
			return func(w http.ResponseWriter, r *http.Request, n int) bool {
				if !isBlobGet(r) {
					return false
				}
				if n == 1 {
					select {
					case <-time.After(5 * time.Second):
					case <-r.Context().Done():
					}
					return true
				}
				b.serve(w, r)
				return true
			}
		}},
		{name: "503 then ok", wantCalls: 2, fault: func(*testing.T) faultFunc {
			return func(w http.ResponseWriter, r *http.Request, n int) bool {
				if !isBlobGet(r) {
					return false
				}
				if n == 1 {
					w.WriteHeader(http.StatusServiceUnavailable)
				} else {
					b.serve(w, r)
				}
				return true
			}
		}},
		{name: "wrong bytes", wantErr: true, wantCalls: 1, fault: func(*testing.T) faultFunc {
			return func(w http.ResponseWriter, r *http.Request, _ int) bool {
				if !isBlobGet(r) {
					return false
				}
				bad.serve(w, r)
				return true
			}
		}},
		{name: "too many bytes", wantErr: true, wantCalls: 1, fault: func(*testing.T) faultFunc {
			return func(w http.ResponseWriter, r *http.Request, _ int) bool {
				if !isBlobGet(r) {
					return false
				}
				w.Write(append(append([]byte(nil), b.data...), 'x'))
				return true
			}
		}},
		{name: "404 not retried", wantErr: true, wantCalls: 1, fault: func(*testing.T) faultFunc { return nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := newTestRegistry(t)
			reg.setFault(tt.fault(t))
			opts := []ClientOption{}
			if tt.stall > 0 {
				opts = append(opts, WithStallTimeout(tt.stall))
			}
			c := newTestClient(t, insecure(reg.host), opts...)
			l := openTestLayout(t)
			w, err := l.NewBlobWriter(b.desc.Digest, b.desc.Size)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Abort()
			var mu sync.Mutex
			var progress int64
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			repo := parseRef(t, c, reg.host+"/test/blob:any").Context()

			start := time.Now()
			err = c.FetchBlob(ctx, []Source{{Repo: repo}}, b.desc, w, func(n int64) {
				mu.Lock()
				progress += n
				mu.Unlock()
			})
			if err == nil {
				err = w.Commit()
			}
			elapsed := time.Since(start)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if n := reg.count("GET blobs"); tt.wantCalls >= 0 && n != tt.wantCalls {
				t.Errorf("%d blob GETs, want %d (Range headers: %q)", n, tt.wantCalls, reg.rangesSeen())
			}
			if tt.maxTime > 0 && elapsed > tt.maxTime {
				t.Errorf("took %v, want under %v", elapsed, tt.maxTime)
			}
			ranges := reg.rangesSeen()
			if len(ranges) > 0 && ranges[0] != "" {
				t.Errorf("first request asked for Range %q", ranges[0])
			}
			if tt.wantRange {
				want := fmt.Sprintf("bytes=%d-", len(b.data)/2)
				if len(ranges) < 2 || ranges[1] != want {
					t.Errorf("Range headers %q, want a second request with %q", ranges, want)
				}
			}
			if tt.wantErr {
				if l.HasBlob(b.desc.Digest, -1) {
					t.Error("blob stored despite the error")
				}
				return
			}
			got, err := l.ReadBlob(b.desc.Digest)
			if err != nil || !bytes.Equal(got, b.data) {
				t.Fatalf("stored blob: %v", err)
			}
			if progress != b.desc.Size {
				t.Errorf("progress adds up to %d, want %d", progress, b.desc.Size)
			}
			assertNoTemps(t, l)
		})
	}
}

func TestFetchBlobNextSource(t *testing.T) {
	b := newBlob(t, 64<<10)
	empty := newTestRegistry(t)
	full := newTestRegistry(t)
	full.setFault(func(w http.ResponseWriter, r *http.Request, _ int) bool {
		if r.Method != http.MethodGet || requestKind(r.URL.Path) != "blobs" {
			return false
		}
		b.serve(w, r)
		return true
	})
	// The first source breaks off half way, then has nothing: the second must
	// start from zero, not append to the first one's half.
	empty.setFault(func(w http.ResponseWriter, r *http.Request, n int) bool {
		if r.Method != http.MethodGet || requestKind(r.URL.Path) != "blobs" || n > 1 {
			return false
		}
		b.serveHalf(t, w, false)
		return true
	})
	c := newTestClient(t, insecure(empty.host, full.host))
	l := openTestLayout(t)
	w, err := l.NewBlobWriter(b.desc.Digest, b.desc.Size)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	srcs := []Source{
		{Repo: parseRef(t, c, empty.host+"/test/blob:x").Context(), Mirror: true},
		{Repo: parseRef(t, c, full.host+"/test/blob:x").Context()},
	}
	if err := c.FetchBlob(context.Background(), srcs, b.desc, w, nil); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := full.rangesSeen(); len(got) != 1 || got[0] != "" {
		t.Errorf("second source saw Range headers %q, want one plain GET", got)
	}
}

func TestFetchBlobCancelled(t *testing.T) {
	b := newBlob(t, 64<<10)
	reg := newTestRegistry(t)
	c := newTestClient(t, insecure(reg.host))
	ctx, cancel := context.WithCancel(context.Background())
	reg.setFault(func(w http.ResponseWriter, r *http.Request, _ int) bool {
		if r.Method != http.MethodGet || requestKind(r.URL.Path) != "blobs" {
			return false
		}
		w.WriteHeader(http.StatusOK)
		w.Write(b.data[:100])
		w.(http.Flusher).Flush()
		cancel()
		<-r.Context().Done()
		return true
	})
	l := openTestLayout(t)
	w, err := l.NewBlobWriter(b.desc.Digest, b.desc.Size)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	err = c.FetchBlob(ctx, []Source{{Repo: parseRef(t, c, reg.host+"/test/blob:x").Context()}}, b.desc, w, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if n := reg.count("GET blobs"); n != 1 {
		t.Errorf("%d blob GETs after cancellation, want 1", n)
	}
}

func TestNewClient(t *testing.T) {
	tests := []struct {
		name    string
		opts    []ClientOption
		wantErr bool
	}{
		{name: "defaults"},
		{name: "one attempt", opts: []ClientOption{WithBackoff(Backoff{Attempts: 1})}},
		{name: "zero attempts", opts: []ClientOption{WithBackoff(Backoff{})}, wantErr: true},
		{name: "bad registry name", opts: []ClientOption{WithRegistries(map[string]RegistryConfig{"not a host!": {}})}, wantErr: true},
		{name: "docker.io alias", opts: []ClientOption{WithRegistries(map[string]RegistryConfig{"docker.io": {Insecure: true}})}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewClient(tt.opts...)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
		})
	}
}

func TestCandidates(t *testing.T) {
	c := newTestClient(t, map[string]RegistryConfig{
		"docker.io":                 {Mirrors: []string{"mirror.example.com", "127.0.0.1:5000/hub/", "insecure.example.com:8080"}},
		"insecure.example.com:8080": {Insecure: true},
		"ghcr.io":                   {},
	})
	tests := []struct {
		ref  string
		want []string // repository@scheme, mirrors first
	}{
		{ref: "busybox:1.36", want: []string{
			"mirror.example.com/library/busybox@https",
			"127.0.0.1:5000/hub/library/busybox@http",
			"insecure.example.com:8080/library/busybox@http",
			"index.docker.io/library/busybox@https",
		}},
		{ref: "ghcr.io/acme/tool:v1", want: []string{"ghcr.io/acme/tool@https"}},
		{ref: "quay.io/x/y:z", want: []string{"quay.io/x/y@https"}},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			ref := parseRef(t, c, tt.ref)
			var got []string
			for i, src := range c.candidates(ref) {
				got = append(got, src.Repo.Name()+"@"+src.Repo.Scheme())
				if src.Mirror != (i < len(tt.want)-1) {
					t.Errorf("%s: Mirror = %v", src.Repo, src.Mirror)
				}
				// The tag is kept when a mirror is asked.
				if r := retarget(ref, src.Repo); r.Identifier() != ref.Identifier() || r.Context() != src.Repo {
					t.Errorf("retarget(%s, %s) = %s", ref, src.Repo, r)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("candidates:\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

func TestParseReferenceInsecure(t *testing.T) {
	c := newTestClient(t, map[string]RegistryConfig{"registry.internal:5000": {Insecure: true}})
	for _, tt := range []struct{ ref, scheme string }{
		{"registry.internal:5000/a/b:c", "http"},
		{"registry.example.com/a/b:c", "https"},
	} {
		if got := parseRef(t, c, tt.ref).Context().Scheme(); got != tt.scheme {
			t.Errorf("%s: scheme %s, want %s", tt.ref, got, tt.scheme)
		}
	}
	if _, err := c.ParseReference("UPPER/case"); err == nil {
		t.Error("ParseReference accepted an invalid reference")
	}
}

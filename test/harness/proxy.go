package harness

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
	"time"
)

// FaultProxy is an HTTP proxy on 127.0.0.1 in front of a registry that
// injects the faults its Faults ask for and forwards everything else.
// Location headers pointing at the registry are rewritten to the proxy, so
// redirects and upload URLs stay on it.
type FaultProxy struct {
	Addr string // "127.0.0.1:PORT"

	target    *url.URL
	faults    Faults
	inj       *injector
	forward   *httputil.ReverseProxy
	transport *http.Transport
	server    *http.Server
	closed    chan struct{} // closed by Close; ends stalls
	closeOnce sync.Once
}

// StartFaultProxy starts a proxy on a free 127.0.0.1 port forwarding to
// target ("host:port", plain HTTP).
func StartFaultProxy(target string, f Faults) (*FaultProxy, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("fault proxy listening: %w", err)
	}
	quiet := log.New(io.Discard, "", 0)
	p := &FaultProxy{
		Addr:      l.Addr().String(),
		target:    &url.URL{Scheme: "http", Host: target},
		faults:    f,
		inj:       newInjector(f),
		transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 32, IdleConnTimeout: 30 * time.Second},
		closed:    make(chan struct{}),
	}
	p.forward = &httputil.ReverseProxy{
		Rewrite:        func(pr *httputil.ProxyRequest) { pr.SetURL(p.target) },
		ModifyResponse: p.rewriteLocation,
		Transport:      p.transport,
		ErrorLog:       quiet,
	}
	p.server = &http.Server{Handler: p, ErrorLog: quiet}
	go func() { _ = p.server.Serve(l) }()
	return p, nil
}

// rewriteLocation points redirects and upload URLs at the proxy.
func (p *FaultProxy) rewriteLocation(resp *http.Response) error {
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Host != p.target.Host {
		return nil
	}
	loc.Host = p.Addr
	resp.Header.Set("Location", loc.String())
	return nil
}

// ServeHTTP injects the fault chosen for r, if any, else forwards it.
func (p *FaultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = &countingBody{rc: r.Body, inj: p.inj}
	}
	switch kind := p.inj.decide(r); kind {
	case FaultStatus500:
		p.inj.record(kind)
		registryError(w, http.StatusInternalServerError, "UNKNOWN")
	case FaultStatus429:
		p.inj.record(kind)
		w.Header().Set("Retry-After", "1")
		registryError(w, http.StatusTooManyRequests, "TOOMANYREQUESTS")
	case FaultReset:
		p.reset(w, kind)
	case FaultResetMidBody, FaultStall:
		p.forward.ServeHTTP(p.midBodyWriter(w, r, kind), r)
	case FaultResetUpload:
		// Take part of the upload, as a connection that breaks mid-way.
		_, _ = io.CopyN(io.Discard, r.Body, max(r.ContentLength/2, 1<<10))
		p.reset(w, kind)
	case FaultStall503:
		p.inj.record(FaultStall503)
		stall := p.faults.StallFor
		if stall <= 0 {
			stall = 2 * time.Second
		}
		select {
		case <-r.Context().Done():
			return
		case <-p.closed:
			return
		case <-time.After(stall):
		}
		registryError(w, http.StatusServiceUnavailable, "UNAVAILABLE")
	default:
		p.forward.ServeHTTP(w, r)
	}
}

// registryError answers like a registry would, with an errors document.
func registryError(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"errors":[{"code":%q,"message":"injected by kiln test harness"}]}`+"\n", code)
}

// reset closes the connection with a TCP RST before any response.
func (p *FaultProxy) reset(w http.ResponseWriter, kind string) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		registryError(w, http.StatusInternalServerError, "UNKNOWN")
		return
	}
	if tcp, ok := conn.(*net.TCPConn); ok {
		_ = tcp.SetLinger(0)
	}
	_ = conn.Close()
	p.inj.record(kind)
}

// Counts returns the faults injected so far by kind (FaultStatus500, ...),
// plus CountRequests for every request received.
func (p *FaultProxy) Counts() map[string]int {
	return p.inj.snapshot()
}

// Close stops the proxy, ending stalled responses and open connections.
func (p *FaultProxy) Close() error {
	var err error
	p.closeOnce.Do(func() {
		close(p.closed)
		err = p.server.Close()
		p.transport.CloseIdleConnections()
	})
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// NewFaultProxy starts a fault proxy in front of target and closes it when
// the test ends.
func NewFaultProxy(t testing.TB, target string, f Faults) *FaultProxy {
	t.Helper()
	p, err := StartFaultProxy(target, f)
	if err != nil {
		t.Fatalf("starting fault proxy: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// countingBody adds what a client uploads to CountUploadBytes.
type countingBody struct {
	rc  io.ReadCloser
	inj *injector
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.inj.add(CountUploadBytes, n)
	}
	return n, err
}

func (b *countingBody) Close() error { return b.rc.Close() }

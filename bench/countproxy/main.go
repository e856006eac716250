// Command countproxy is a reverse proxy on 127.0.0.1 that counts what goes
// through it: requests (by method) and response bytes (bodies, and headers
// with status lines). kiln's benchmarks put it between kiln and the registry
// to measure what a re-warm costs on the wire.
//
//	countproxy -target 127.0.0.1:5000 -addr-file bench/.work/proxy.addr
//
// It listens on -listen (default a free port), writes "127.0.0.1:PORT" to
// -addr-file once it accepts connections, and serves:
//
//	GET /_countproxy/stats          the counts so far, as JSON
//	GET /_countproxy/stats?reset=1  the same, then zero them (one phase ends)
//
// With -access-log FILE it also appends one line per request to FILE,
// "METHOD PATH STATUS BYTES", and a "--- reset" line at each reset.
//
// Everything else goes to the target. When standard input closes, or on
// SIGTERM/SIGINT, it prints the totals (JSON, one line) and exits.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// Stats are the counts of one phase.
type Stats struct {
	Requests    int64            `json:"requests"`
	ByMethod    map[string]int64 `json:"by_method"`
	ByStatus    map[string]int64 `json:"by_status"`
	BodyBytes   int64            `json:"body_bytes"`   // response bodies
	HeaderBytes int64            `json:"header_bytes"` // status lines and response headers, approximately as sent
	Bytes       int64            `json:"bytes"`        // BodyBytes + HeaderBytes
}

type counter struct {
	mu sync.Mutex
	s  Stats
}

// accessLog writes one line per request; nil writes nothing.
type accessLog struct {
	mu sync.Mutex
	w  io.Writer
}

func (a *accessLog) printf(format string, args ...any) {
	if a == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	fmt.Fprintf(a.w, format, args...)
}

func newStats() Stats {
	return Stats{ByMethod: map[string]int64{}, ByStatus: map[string]int64{}}
}

func (c *counter) add(method string, status int, header, body int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.s.Requests++
	c.s.ByMethod[method]++
	c.s.ByStatus[fmt.Sprint(status)]++
	c.s.HeaderBytes += header
	c.s.BodyBytes += body
	c.s.Bytes = c.s.HeaderBytes + c.s.BodyBytes
}

func (c *counter) snapshot(reset bool) Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.s
	if reset {
		c.s = newStats()
	}
	return s
}

// countingWriter counts the body bytes and the header size of one response.
type countingWriter struct {
	http.ResponseWriter
	status int
	header int64
	body   int64
}

func (w *countingWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
		w.header = int64(len(fmt.Sprintf("HTTP/1.1 %d %s\r\n", code, http.StatusText(code)))) + 2
		for k, vs := range w.Header() {
			for _, v := range vs {
				w.header += int64(len(k) + len(v) + 4)
			}
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *countingWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	n, err := w.ResponseWriter.Write(p)
	w.body += int64(n)
	return n, err
}

func (w *countingWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func main() {
	target := flag.String("target", "", "the registry, HOST:PORT (plain HTTP)")
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on (loopback only)")
	addrFile := flag.String("addr-file", "", "write the listening address here once ready")
	watchStdin := flag.Bool("stdin", true, "stop when standard input closes")
	accessPath := flag.String("access-log", "", "append one line per request to this file")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("countproxy: ")
	if *target == "" {
		log.Fatal("-target is required")
	}
	host, _, err := net.SplitHostPort(*listen)
	if err != nil || (host != "127.0.0.1" && host != "localhost" && host != "::1") {
		log.Fatalf("-listen %q: must be a loopback address", *listen)
	}

	var alog *accessLog
	if *accessPath != "" {
		f, err := os.OpenFile(*accessPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			log.Fatal(err)
		}
		defer f.Close()
		alog = &accessLog{w: f}
	}
	c := &counter{s: newStats()}
	total := &counter{s: newStats()}
	u := &url.URL{Scheme: "http", Host: *target}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64, DisableCompression: true}
	rp.FlushInterval = -1

	mux := http.NewServeMux()
	mux.HandleFunc("GET /_countproxy/stats", func(w http.ResponseWriter, r *http.Request) {
		reset := r.URL.Query().Get("reset") != ""
		s := c.snapshot(reset)
		if reset {
			alog.printf("--- reset\n")
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		cw := &countingWriter{ResponseWriter: w}
		rp.ServeHTTP(cw, r)
		if cw.status == 0 {
			cw.WriteHeader(http.StatusOK)
		}
		c.add(r.Method, cw.status, cw.header, cw.body)
		alog.printf("%s %s %d %d\n", r.Method, r.URL.RequestURI(), cw.status, cw.header+cw.body)
		total.add(r.Method, cw.status, cw.header, cw.body)
	})

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 30 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
			log.Fatal(err)
		}
	}()
	if *addrFile != "" {
		tmp := *addrFile + ".tmp"
		if err := os.WriteFile(tmp, []byte(ln.Addr().String()+"\n"), 0o644); err != nil {
			log.Fatal(err)
		}
		if err := os.Rename(tmp, *addrFile); err != nil {
			log.Fatal(err)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *watchStdin {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			stop()
		}()
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	out, _ := json.Marshal(total.snapshot(false))
	fmt.Println(string(out))
}

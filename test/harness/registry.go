package harness

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ErrRegistryNotFound means the docker-registry binary is neither on PATH
// nor at /usr/bin/docker-registry.
var ErrRegistryNotFound = errors.New("docker-registry binary not found")

// errPortInUse means the registry lost the race for its port; StartRegistry
// retries with another one.
var errPortInUse = errors.New("registry port already in use")

const (
	registryBinary   = "docker-registry"
	registryFallback = "/usr/bin/docker-registry"
	readyTimeout     = 20 * time.Second
	stopGrace        = 5 * time.Second
	portAttempts     = 5
	// tokenHeader is set on every response of a registry started here, so
	// the readiness check cannot mistake another server on the port for ours.
	tokenHeader = "X-Kiln-Harness"
)

// Registry is a running docker-registry (distribution 2.8) process serving
// plain HTTP (or TLS: StartTLSRegistry) on 127.0.0.1 with deletes enabled.
type Registry struct {
	Addr string    // "127.0.0.1:PORT"
	Dir  string    // holds config.yml and the data folder
	Cmd  *exec.Cmd // the running process

	tls       *tls.Config // how to reach a TLS registry; nil for plain HTTP
	token     string
	out       *tailWriter
	done      chan struct{} // closed when the process has exited
	waitErr   error         // set before done is closed
	closeOnce sync.Once
	closeErr  error
}

// StartRegistry writes dir/config.yml, starts docker-registry with its data
// under dir/data and its log (level warn) copied to logw, and returns once
// GET /v2/ answers 200. It retries with a new port if the port was taken.
func StartRegistry(ctx context.Context, dir string, logw io.Writer) (*Registry, error) {
	bin, err := findRegistryBinary()
	if err != nil {
		return nil, err
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, fmt.Errorf("registry folder: %w", err)
	}
	for attempt := 1; ; attempt++ {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		r, err := startRegistryAt(ctx, bin, dir, addr, logw)
		if !errors.Is(err, errPortInUse) || attempt == portAttempts {
			return r, err
		}
	}
}

func findRegistryBinary() (string, error) {
	if p, err := exec.LookPath(registryBinary); err == nil {
		return p, nil
	}
	if _, err := os.Stat(registryFallback); err == nil {
		return registryFallback, nil
	}
	return "", fmt.Errorf("%w (looked on PATH and at %s)", ErrRegistryNotFound, registryFallback)
}

func startRegistryAt(ctx context.Context, bin, dir, addr string, logw io.Writer) (*Registry, error) {
	r := &Registry{Addr: addr, Dir: dir, token: newToken(), done: make(chan struct{})}
	cfg, err := r.writeConfig()
	if err != nil {
		return nil, err
	}
	if logw == nil {
		logw = io.Discard
	}
	r.out = &tailWriter{w: logw, max: 64 << 10}
	r.Cmd = exec.Command(bin, "serve", cfg)
	r.Cmd.Dir = dir
	r.Cmd.Stdout, r.Cmd.Stderr = r.out, r.out
	r.Cmd.SysProcAttr = sysProcAttr()
	if err := r.Cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	go r.wait()
	if err := r.waitReady(ctx); err != nil {
		_ = r.Close()
		return nil, err
	}
	return r, nil
}

// freeAddr asks the kernel for a free loopback port. Another process may
// take it before the registry binds; waitReady reports that as errPortInUse.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func newToken() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (r *Registry) writeConfig() (string, error) {
	data := filepath.Join(r.Dir, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return "", fmt.Errorf("creating registry data folder: %w", err)
	}
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %q
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %s
  secret: %s
  headers:
    %s: [%s]
`, data, r.Addr, r.token, tokenHeader, r.token)
	path := filepath.Join(r.Dir, "config.yml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return "", fmt.Errorf("writing registry config: %w", err)
	}
	return path, nil
}

func (r *Registry) wait() {
	r.waitErr = r.Cmd.Wait()
	close(r.done)
}

// waitReady polls GET /v2/ until our registry (recognised by its token)
// answers 200, the process exits, or readyTimeout passes.
func (r *Registry) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true, TLSClientConfig: r.tls}}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if r.ping(ctx, client) {
			return nil
		}
		if r.exited() { // before the select, which picks among ready cases at random
			return r.exitError()
		}
		select {
		case <-r.done:
			return r.exitError()
		case <-ctx.Done():
			return fmt.Errorf("waiting for registry on %s: %w\nregistry output:\n%s", r.Addr, ctx.Err(), r.out.String())
		case <-tick.C:
		}
	}
}

func (r *Registry) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

func (r *Registry) ping(ctx context.Context, client *http.Client) bool {
	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	scheme := "http"
	if r.tls != nil {
		scheme = "https"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+r.Addr+"/v2/", nil)
	if err != nil {
		return false
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK && resp.Header.Get(tokenHeader) == r.token
}

func (r *Registry) exitError() error {
	out := r.out.String()
	if strings.Contains(out, "address already in use") {
		return fmt.Errorf("%w: %s", errPortInUse, r.Addr)
	}
	return fmt.Errorf("registry on %s exited before it was ready: %v\nregistry output:\n%s", r.Addr, r.waitErr, out)
}

// Ref returns a reference to repoAndTag (e.g. "base/multi:1") on this
// registry.
func (r *Registry) Ref(repoAndTag string) string {
	return r.Addr + "/" + repoAndTag
}

// Close stops the registry: SIGTERM to its PID, SIGKILL if it is still
// running after 5s, then waits for it. It reports an error if the process
// had already died on its own. Close is safe to call more than once.
func (r *Registry) Close() error {
	r.closeOnce.Do(func() { r.closeErr = r.stop() })
	return r.closeErr
}

func (r *Registry) stop() error {
	if r.exited() {
		return fmt.Errorf("registry on %s had already exited: %v\nregistry output:\n%s", r.Addr, r.waitErr, r.out.String())
	}
	if err := r.Cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stopping registry pid %d: %w", r.Cmd.Process.Pid, err)
	}
	select {
	case <-r.done:
		return nil
	case <-time.After(stopGrace):
	}
	if err := r.Cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("killing registry pid %d: %w", r.Cmd.Process.Pid, err)
	}
	<-r.done
	return nil
}

// NewRegistry starts a registry in t.TempDir(), logs its output through t,
// and stops it when the test ends.
func NewRegistry(t testing.TB) *Registry {
	t.Helper()
	r, err := StartRegistry(t.Context(), t.TempDir(), tbWriter{t})
	if errors.Is(err, ErrRegistryNotFound) {
		t.Fatalf("%v: apt-get install docker-registry (.ci/run does this)", err)
	}
	if err != nil {
		t.Fatalf("starting registry: %v", err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("closing registry: %v", err)
		}
	})
	return r
}

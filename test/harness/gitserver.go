package harness

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// GitServer serves the bare repositories under one folder over git's smart
// HTTP protocol: git's own http-backend behind net/http/cgi, on 127.0.0.1.
// With a user set, every request needs those HTTP Basic credentials.
type GitServer struct {
	URL string // http://127.0.0.1:PORT; a repository is URL + "/" + its folder name

	srv *httptest.Server
	mu  sync.Mutex
	// unauthorised counts requests refused for want of credentials.
	unauthorised int
}

// StartGitServer serves root's bare repositories (read-only). It needs the
// git binary's http-backend on the machine running the test, not on the
// one running the code under test.
func StartGitServer(root, user, pass string) (*GitServer, error) {
	out, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		return nil, fmt.Errorf("finding git's http-backend: %w", err)
	}
	backend := filepath.Join(strings.TrimSpace(string(out)), "git-http-backend")
	if _, err := exec.LookPath(backend); err != nil {
		return nil, errors.New("git-http-backend not installed")
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	g := &GitServer{}
	cgiHandler := &cgi.Handler{Path: backend, Env: []string{"GIT_PROJECT_ROOT=" + abs, "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1", "HOME=" + abs}}
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); user != "" && (!ok || u != user || p != pass) {
			g.mu.Lock()
			g.unauthorised++
			g.mu.Unlock()
			w.Header().Set("WWW-Authenticate", `Basic realm="kiln-test-git"`)
			http.Error(w, "credentials needed", http.StatusUnauthorized)
			return
		}
		if strings.Contains(r.URL.RawQuery, "git-receive-pack") || strings.HasSuffix(r.URL.Path, "/git-receive-pack") {
			http.Error(w, "read-only", http.StatusForbidden)
			return
		}
		cgiHandler.ServeHTTP(w, r)
	}))
	g.URL = g.srv.URL
	return g, nil
}

// NewGitServer is StartGitServer for a test: it skips the test where git's
// http-backend is missing and stops the server at the end.
func NewGitServer(t testing.TB, root, user, pass string) *GitServer {
	t.Helper()
	g, err := StartGitServer(root, user, pass)
	if err != nil {
		t.Skipf("no git HTTP server: %v", err)
	}
	t.Cleanup(g.Close)
	return g
}

// Unauthorised counts the requests refused for want of credentials.
func (g *GitServer) Unauthorised() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.unauthorised
}

// Close stops the server.
func (g *GitServer) Close() { g.srv.Close() }

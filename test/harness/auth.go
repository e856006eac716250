package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/crypto/bcrypt"
)

// htpasswdRealm is the Basic realm of a registry started with
// StartRegistryWithAuth.
const htpasswdRealm = "kiln-test"

// StartRegistryWithAuth is StartRegistry with htpasswd authentication: every
// request needs HTTP Basic credentials user:pass (distribution 2.8 accepts
// only bcrypt hashes in the htpasswd file, which is written to dir).
func StartRegistryWithAuth(ctx context.Context, dir string, logw io.Writer, user, pass string) (*Registry, error) {
	bin, err := findRegistryBinary()
	if err != nil {
		return nil, err
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, fmt.Errorf("registry folder: %w", err)
	}
	htpasswd, err := writeHtpasswd(dir, user, pass)
	if err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		r, err := startAuthRegistryAt(ctx, bin, dir, addr, logw, htpasswd, user, pass)
		if !errors.Is(err, errPortInUse) || attempt == portAttempts {
			return r, err
		}
	}
}

func writeHtpasswd(dir, user, pass string) (string, error) {
	hash, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
	if err != nil {
		return "", fmt.Errorf("hashing registry password: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("creating registry folder: %w", err)
	}
	path := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(path, []byte(user+":"+string(hash)+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("writing htpasswd: %w", err)
	}
	return path, nil
}

func startAuthRegistryAt(ctx context.Context, bin, dir, addr string, logw io.Writer, htpasswd, user, pass string) (*Registry, error) {
	r := &Registry{Addr: addr, Dir: dir, token: newToken(), done: make(chan struct{})}
	cfg, err := r.writeConfig()
	if err != nil {
		return nil, err
	}
	auth := fmt.Sprintf("auth:\n  htpasswd:\n    realm: %s\n    path: %q\n", htpasswdRealm, htpasswd)
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("writing registry config: %w", err)
	}
	_, werr := f.WriteString(auth)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return nil, fmt.Errorf("writing registry config: %w", werr)
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
	if err := r.waitReadyAuth(ctx, user, pass); err != nil {
		_ = r.Close()
		return nil, err
	}
	return r, nil
}

// waitReadyAuth is waitReady with credentials: the registry answers 401
// without them.
func (r *Registry) waitReadyAuth(ctx context.Context, user, pass string) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if r.pingAuth(ctx, client, user, pass) {
			return nil
		}
		if r.exited() {
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

func (r *Registry) pingAuth(ctx context.Context, client *http.Client, user, pass string) bool {
	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.Addr+"/v2/", nil)
	if err != nil {
		return false
	}
	req.SetBasicAuth(user, pass)
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK && resp.Header.Get(tokenHeader) == r.token
}

// NewRegistryWithAuth starts a registry needing user:pass in t.TempDir() and
// stops it when the test ends.
func NewRegistryWithAuth(t testing.TB, user, pass string) *Registry {
	t.Helper()
	r, err := StartRegistryWithAuth(t.Context(), t.TempDir(), tbWriter{t}, user, pass)
	if errors.Is(err, ErrRegistryNotFound) {
		t.Fatalf("%v: apt-get install docker-registry (.ci/run does this)", err)
	}
	if err != nil {
		t.Fatalf("starting registry with auth: %v", err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("closing registry: %v", err)
		}
	})
	return r
}

// PushImageWithAuth is PushImage with credentials.
func PushImageWithAuth(ctx context.Context, ref string, spec ImageSpec, auth authn.Authenticator) (v1.Hash, error) {
	img, err := Image(spec)
	if err != nil {
		return v1.Hash{}, err
	}
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("parsing %s: %w", ref, err)
	}
	if err := remote.Write(r, img, append(remoteOptions(ctx), remote.WithAuth(auth))...); err != nil {
		return v1.Hash{}, fmt.Errorf("pushing %s: %w", ref, err)
	}
	return img.Digest()
}

// PushIndexWithAuth is PushIndex with credentials.
func PushIndexWithAuth(ctx context.Context, ref string, specs []ImageSpec, auth authn.Authenticator) (v1.Hash, error) {
	idx, _, err := index(specs)
	if err != nil {
		return v1.Hash{}, err
	}
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("parsing %s: %w", ref, err)
	}
	if err := remote.WriteIndex(r, idx, append(remoteOptions(ctx), remote.WithAuth(auth))...); err != nil {
		return v1.Hash{}, fmt.Errorf("pushing index %s: %w", ref, err)
	}
	return idx.Digest()
}

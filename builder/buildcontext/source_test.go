package buildcontext

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestOpenKanikoSchemes: kaniko's dir://, tar:// and tar://stdin, an
// https:// tarball, and the object stores kiln refuses with the way around.
func TestOpenKanikoSchemes(t *testing.T) {
	files := makeTar(t, reg("Dockerfile", "FROM scratch\n"), reg("app/main.go", "package main\n"))
	want := []string{"Dockerfile", "app/", "app/main.go"}
	src := t.TempDir()
	writeTree(t, filepath.Join(src, "dir"), tree{"Dockerfile": "FROM scratch\n", "app/main.go": "package main\n"})
	tarGz := writeFile(t, src, "ctx.tar.gz", gzipped(t, files))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ctx.tar.gz":
			w.Write(gzipped(t, files))
		case "/Dockerfile":
			w.Write([]byte("FROM scratch\n"))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	tests := []struct {
		name    string
		source  string
		stdin   []byte
		want    []string
		wantErr error
		errHas  string
	}{
		{name: "dir://", source: "dir://" + filepath.Join(src, "dir"), want: want},
		{name: "dir:// of a file", source: "dir://" + tarGz, wantErr: errAny, errHas: "tar://"},
		{name: "dir:// missing", source: "dir://" + filepath.Join(src, "nope"), wantErr: os.ErrNotExist},
		{name: "tar://", source: "tar://" + tarGz, want: want},
		{name: "tar:// of a folder", source: "tar://" + filepath.Join(src, "dir"), wantErr: errAny, errHas: "dir://"},
		{name: "tar://stdin", source: "tar://stdin", stdin: gzipped(t, files), want: want},
		{name: "https tarball", source: srv.URL + "/ctx.tar.gz", want: want},
		{name: "https Dockerfile", source: srv.URL + "/Dockerfile", want: []string{"Dockerfile"}},
		{name: "https 404, signature hidden", source: srv.URL + "/gone.tar.gz?X-Amz-Signature=s3cret", wantErr: errAny, errHas: "404"},
		{name: "s3", source: "s3://bucket/ctx.tar.gz", wantErr: ErrUnsupportedSource, errHas: "tar://"},
		{name: "gs", source: "gs://bucket/ctx.tar.gz", wantErr: ErrUnsupportedSource, errHas: "sign-url"},
		{name: "unknown scheme", source: "ftp://host/ctx.tar", wantErr: ErrUnsupportedSource},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := Options{TempDir: t.TempDir(), Stdin: bytes.NewReader(tt.stdin)}
			c, err := Open(context.Background(), tt.source, opts)
			if !matchErr(err, tt.wantErr) || err != nil && !strings.Contains(err.Error(), tt.errHas) {
				t.Fatalf("Open: err = %v, want %v containing %q", err, tt.wantErr, tt.errHas)
			}
			if err != nil {
				if strings.Contains(err.Error(), "s3cret") {
					t.Errorf("the error shows the URL's signature: %v", err)
				}
				assertEmpty(t, opts.TempDir)
				return
			}
			defer c.Close()
			if got := walkAll(t, c, "."); !slices.Equal(got, tt.want) {
				t.Errorf("Walk = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDownloadHintForAzure(t *testing.T) {
	c := &http.Client{Transport: roundTripper(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: http.StatusForbidden, Status: "403 Forbidden", Body: http.NoBody, Request: r}, nil
	})}
	_, err := Open(context.Background(), "https://acct.blob.core.windows.net/ctx/context.tar.gz", Options{TempDir: t.TempDir(), HTTPClient: c})
	if err == nil || !strings.Contains(err.Error(), "SAS URL") {
		t.Errorf("Open: %v, want a hint about SAS URLs", err)
	}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestLocalPath(t *testing.T) {
	dir := t.TempDir()
	for source, want := range map[string]string{
		"dir:///workspace":                "/workspace",
		"tar:///workspace/ctx.tar.gz":     "/workspace/ctx.tar.gz",
		"tar://stdin":                     "-",
		"-":                               "-",
		dir:                               dir,
		"relative/ctx":                    "relative/ctx",
		"git://github.com/acme/api":       "",
		"https://example.com/ctx.tar.gz":  "",
		"https://example.com/api.git#dev": "",
		"s3://bucket/ctx.tar.gz":          "",
	} {
		if got := LocalPath(source); got != want {
			t.Errorf("LocalPath(%q) = %q, want %q", source, got, want)
		}
	}
}

// TestOpenSubPath: kaniko's --context-sub-path makes a folder of the
// context its root, after a git subdir, and cannot climb out of it.
func TestOpenSubPath(t *testing.T) {
	files := tree{"Dockerfile": "FROM root\n", "svc/Dockerfile": "FROM svc\n", "svc/.dockerignore": "secret\n", "svc/secret": "x", "svc/app": "a", "svc/out": "-> ../../..", "file": "f"}
	tests := []struct {
		name, sub string
		want      []string
		wantErr   string
	}{
		{name: "folder", sub: "svc", want: []string{".dockerignore", "Dockerfile", "app", "out -> ../../.."}},
		{name: "dot-dot stays inside", sub: "../../svc", want: []string{".dockerignore", "Dockerfile", "app", "out -> ../../.."}},
		{name: "symlink out stays inside", sub: "svc/out", want: []string{"Dockerfile", "file", "svc/", "svc/.dockerignore", "svc/Dockerfile", "svc/app", "svc/out -> ../../..", "svc/secret"}},
		{name: "missing", sub: "nope", wantErr: "nope"},
		{name: "a file", sub: "file", wantErr: "not a folder"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeTree(t, dir, files)
			c, err := Open(context.Background(), dir, Options{SubPath: tt.sub})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Open: %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if got := walkAll(t, c, "."); !slices.Equal(got, tt.want) {
				t.Errorf("Walk = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestOpenDockerfileOutside: an absolute Dockerfile path is read from the
// host, inside the context or not, as `docker build -f` does; outside, its
// "<Dockerfile>.dockerignore" beside it wins over the context's.
func TestOpenDockerfileOutside(t *testing.T) {
	base := t.TempDir()
	writeTree(t, base, tree{
		"ctx/app": "a", "ctx/secret": "s", "ctx/logs/x": "l", "ctx/.dockerignore": "secret\n",
		"ctx/build/Dockerfile": "FROM inside\n", "ctx/build/Dockerfile.dockerignore": "logs\n",
		"elsewhere/Dockerfile": "FROM outside\n", "elsewhere/Dockerfile.dockerignore": "app\n",
		"plain/Dockerfile": "FROM plain\n",
		"link":             "-> ctx/build/Dockerfile",
	})
	ctxDir := filepath.Join(base, "ctx")
	tests := []struct {
		name, dockerfile string
		wantDockerfile   string
		want             []string
		wantErr          error
	}{
		{name: "inside, absolute", dockerfile: filepath.Join(ctxDir, "build/Dockerfile"), wantDockerfile: "FROM inside\n",
			want: []string{".dockerignore", "app", "build/", "build/Dockerfile", "build/Dockerfile.dockerignore", "secret"}},
		{name: "inside through a symlink", dockerfile: filepath.Join(base, "link"), wantDockerfile: "FROM inside\n",
			want: []string{".dockerignore", "app", "build/", "build/Dockerfile", "build/Dockerfile.dockerignore", "secret"}},
		{name: "outside, its own ignore file", dockerfile: filepath.Join(base, "elsewhere/Dockerfile"), wantDockerfile: "FROM outside\n",
			want: []string{".dockerignore", "build/", "build/Dockerfile", "build/Dockerfile.dockerignore", "logs/", "logs/x", "secret"}},
		{name: "outside, the context's ignore file", dockerfile: filepath.Join(base, "plain/Dockerfile"), wantDockerfile: "FROM plain\n",
			want: []string{".dockerignore", "app", "build/", "build/Dockerfile", "build/Dockerfile.dockerignore", "logs/", "logs/x"}},
		{name: "missing", dockerfile: filepath.Join(base, "nope/Dockerfile"), wantErr: os.ErrNotExist},
		{name: "a folder", dockerfile: filepath.Join(base, "plain"), wantErr: errNotRegular},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Open(context.Background(), ctxDir, Options{Dockerfile: tt.dockerfile})
			if tt.wantErr == os.ErrNotExist {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Open: %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			df, err := c.Dockerfile()
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("Dockerfile(): %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil || string(df) != tt.wantDockerfile {
				t.Errorf("Dockerfile() = %q, %v; want %q", df, err, tt.wantDockerfile)
			}
			if got := walkAll(t, c, "."); !slices.Equal(got, tt.want) {
				t.Errorf("Walk = %q, want %q", got, tt.want)
			}
		})
	}
}

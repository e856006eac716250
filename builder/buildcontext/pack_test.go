package buildcontext

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
)

// TestPack: the packed context is what .dockerignore lets through plus the
// Dockerfile and the ignore file, the same bytes every time, and opening
// the pack as a context gives the same files.
func TestPack(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"Dockerfile":    "FROM scratch\nCOPY . /\n",
		".dockerignore": "secret.txt\nDockerfile\nbuild/\n!build/keep\n",
		"a.txt":         "a",
		"sub/b.txt":     "b",
		"secret.txt":    "s",
		"build/x":       "x",
		"build/keep":    "k",
	}
	for p, body := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(dir, "a.txt"), 0o755|os.ModeSetuid); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a.txt", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := os.Chtimes(filepath.Join(dir, "sub/b.txt"), old, old); err != nil {
		t.Fatal(err)
	}
	pack := func() []byte {
		c, err := Open(context.Background(), dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var buf bytes.Buffer
		if err := c.Pack(&buf); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	first, second := pack(), pack()
	if sha256.Sum256(first) != sha256.Sum256(second) {
		t.Fatal("two packs of the same context differ")
	}
	zr, err := gzip.NewReader(bytes.NewReader(first))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var names []string
	headers := map[string]*tar.Header{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		headers[h.Name] = h
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || !h.AccessTime.IsZero() {
			t.Errorf("%s: owner %d:%d %q, atime %v; want 0:0, no name, no atime", h.Name, h.Uid, h.Gid, h.Uname, h.AccessTime)
		}
	}
	want := []string{".dockerignore", "a.txt", "build/", "build/keep", "link", "sub/", "sub/b.txt", "Dockerfile"}
	if !slices.Equal(names, want) {
		t.Errorf("packed %q, want %q", names, want)
	}
	if h := headers["a.txt"]; h == nil || h.Mode != 0o4755 {
		t.Errorf("a.txt mode %o, want 4755", h.Mode)
	}
	if h := headers["sub/b.txt"]; h == nil || !h.ModTime.Equal(old) {
		t.Errorf("sub/b.txt mtime %v, want %v", h.ModTime, old)
	}
	if h := headers["link"]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "a.txt" {
		t.Errorf("link: %+v", h)
	}

	// Read back as a tar context: the same files come through.
	tarFile := filepath.Join(t.TempDir(), "ctx.tar.gz")
	if err := os.WriteFile(tarFile, first, 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Open(context.Background(), tarFile, Options{TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var walked []string
	if err := c.Walk(".", func(rel string, fi os.FileInfo) error {
		if rel != "." {
			walked = append(walked, rel)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if df, err := c.Dockerfile(); err != nil || string(df) != files["Dockerfile"] {
		t.Errorf("Dockerfile from the pack: %q, %v", df, err)
	}
	if want := []string{".dockerignore", "a.txt", "build", "build/keep", "link", "sub", "sub/b.txt"}; !slices.Equal(walked, want) {
		t.Errorf("the unpacked context walks %q, want %q", walked, want)
	}
}

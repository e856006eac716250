package buildcontext

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// tree describes files to write: a key ending in "/" is a folder, a value
// starting with "-> " is a symlink to the rest, anything else is content.
type tree map[string]string

func writeTree(t *testing.T, dir string, files tree) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch {
		case strings.HasSuffix(name, "/"):
			err = os.MkdirAll(p, 0o755)
		case strings.HasPrefix(content, "-> "):
			err = os.Symlink(strings.TrimPrefix(content, "-> "), p)
		default:
			err = os.WriteFile(p, []byte(content), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// openTree writes files into a new folder and opens it as a context.
func openTree(t *testing.T, files tree, opts Options) *Context {
	t.Helper()
	dir := t.TempDir()
	writeTree(t, dir, files)
	c, err := Open(context.Background(), dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// walkAll lists what Walk reports, folders with a trailing "/" and symlinks
// as "name -> target".
func walkAll(t *testing.T, c *Context, rel string) []string {
	t.Helper()
	var got []string
	err := c.Walk(rel, func(p string, info fs.FileInfo) error {
		got = append(got, describe(c, rel, p, info))
		return nil
	})
	if err != nil {
		t.Fatalf("Walk(%q): %v", rel, err)
	}
	return got
}

func describe(c *Context, base, p string, info fs.FileInfo) string {
	switch {
	case info.IsDir():
		return p + "/"
	case info.Mode()&fs.ModeSymlink != 0:
		host, _ := c.Resolve(".")
		target, _ := os.Readlink(filepath.Join(host, base, p))
		return p + " -> " + target
	}
	return p
}

// entry is one tar entry; body is written as the entry's data.
type entry struct {
	hdr  tar.Header
	body string
}

func reg(name, body string) entry {
	return entry{tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body)), ModTime: time.Unix(1e9, 0)}, body}
}

func dirEntry(name string, mode int64) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, ModTime: time.Unix(1e9, 0)}}
}

func symlinkEntry(name, target string) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target}}
}

func hardlinkEntry(name, target string) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target}}
}

func makeTar(t *testing.T, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := e.hdr
		if err := tw.WriteHeader(&hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// assertEmpty fails if dir holds anything: the "outside" of hostile tests.
func assertEmpty(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("written outside the context: %s", filepath.Join(dir, e.Name()))
	}
}

func errorIs(err, target error) bool { return errors.Is(err, target) }

package archcheck

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	specs "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"

	"kiln/platform"
)

// testArches are the architectures tests cross-compile a real program for.
var testArches = []string{"amd64", "arm64", "arm", "386", "ppc64le", "s390x", "riscv64"}

// bins builds the test programs once, on first use, into the directory
// TestMain owns.
var bins struct {
	dir  string
	once func() (map[string][]byte, error)
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "archcheck-bins-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bins.dir = dir
	bins.once = sync.OnceValues(func() (map[string][]byte, error) { return buildAll(dir) })
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const helloGo = "package main\n\nfunc main() { println(\"hello\") }\n"

// buildAll cross-compiles hello for every test architecture, two at a time.
func buildAll(dir string) (map[string][]byte, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return nil, err
	}
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, []byte(helloGo), 0o644); err != nil {
		return nil, err
	}
	out := make([][]byte, len(testArches))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(2)
	for i, arch := range testArches {
		g.Go(func() error {
			exe := filepath.Join(dir, "hello-"+arch)
			cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-ldflags=-s -w", "-o", exe, src)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+arch, "CGO_ENABLED=0", "GOFLAGS=")
			if msg, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("go build for %s: %v\n%s", arch, err, msg)
			}
			b, err := os.ReadFile(exe)
			out[i] = b
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	m := make(map[string][]byte, len(testArches))
	for i, arch := range testArches {
		m[arch] = out[i]
	}
	return m, nil
}

// bin returns the test program compiled for arch.
func bin(t testing.TB, arch string) []byte {
	t.Helper()
	m, err := bins.once()
	if err != nil {
		t.Fatalf("building test programs: %v", err)
	}
	b, ok := m[arch]
	if !ok {
		t.Fatalf("no test program for %s", arch)
	}
	return b
}

// entry is one tar entry of a layer built by a test.
type entry struct {
	name string
	typ  byte
	mode int64
	body []byte
	link string
	size int64 // declared size, when it must differ from len(body)
}

func exe(name string, body []byte) entry {
	return entry{name: name, typ: tar.TypeReg, mode: 0o755, body: body}
}
func file(name string, body []byte) entry {
	return entry{name: name, typ: tar.TypeReg, mode: 0o644, body: body}
}
func dir(name string) entry { return entry{name: name, typ: tar.TypeDir, mode: 0o755} }
func hardlink(name, target string) entry {
	return entry{name: name, typ: tar.TypeLink, mode: 0o755, link: target}
}
func symlink(name, target string) entry {
	return entry{name: name, typ: tar.TypeSymlink, mode: 0o777, link: target}
}

// layerTar builds a layer. An entry whose declared size exceeds its body
// leaves the tar truncated right there, as a hostile or broken layer would.
func layerTar(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{
			Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link,
			ModTime: time.Unix(1_600_000_000, 0), Format: tar.FormatPAX,
		}
		if e.typ == tar.TypeReg {
			hdr.Size = int64(len(e.body))
		}
		if e.size != 0 {
			hdr.Size = e.size
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.body); err != nil {
			t.Fatal(err)
		}
		if hdr.Size > int64(len(e.body)) {
			return buf.Bytes() // no padding, no end of archive
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// layer wraps a layer tar as a go-containerregistry layer.
func layer(t testing.TB, b []byte) v1.Layer {
	t.Helper()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func platformOrZero(s string) specs.Platform {
	if s == "" {
		return specs.Platform{}
	}
	return platform.MustParse(s)
}

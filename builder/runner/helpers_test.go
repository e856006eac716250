package runner

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	specs "github.com/opencontainers/image-spec/specs-go/v1"

	"kiln/builder/run"
	"kiln/platform"
)

// goBinaries caches the tiny Go program built per architecture.
var goBinaries sync.Map // arch → path

// goBinary cross-compiles a tiny static Go program for linux/arch.
func goBinary(t *testing.T, arch string) []byte {
	t.Helper()
	if p, ok := goBinaries.Load(arch); ok {
		return readFile(t, p.(string))
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go toolchain to cross-compile with")
	}
	src := t.TempDir()
	writeFiles(t, src, map[string]string{
		"go.mod":  "module hello\n\ngo 1.21\n",
		"main.go": "package main\n\nfunc main() { println(\"hello\") }\n",
	})
	out := filepath.Join(os.TempDir(), fmt.Sprintf("kiln-runner-test-hello-%s-%d", arch, os.Getpid()))
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+arch, "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build for %s: %v\n%s", arch, err, b)
	}
	goBinaries.Store(arch, out)
	return readFile(t, out)
}

func TestMain(m *testing.M) {
	run.MaybeInit() // a build's RUN re-executes this binary as the step's init
	code := m.Run()
	goBinaries.Range(func(_, p any) bool {
		os.Remove(p.(string))
		return true
	})
	os.Exit(code)
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// writeFiles writes files (slash path → content) under dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for n, body := range files {
		writeFile(t, filepath.Join(dir, filepath.FromSlash(n)), []byte(body), 0o644)
	}
}

func writeFile(t *testing.T, p string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

// layer is a layer of files (path → content), each executable.
func layer(t *testing.T, files map[string][]byte) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		hdr := &tar.Header{Name: n, Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(files[n])), ModTime: time.Unix(1_600_000_000, 0)}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(files[n]); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// image is an OCI image for p with layers.
func image(t *testing.T, p specs.Platform, layers ...v1.Layer) v1.Image {
	t.Helper()
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.ConfigFile(img, &v1.ConfigFile{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant, RootFS: v1.RootFS{Type: "layers"}})
	if err != nil {
		t.Fatal(err)
	}
	if img, err = mutate.AppendLayers(img, layers...); err != nil {
		t.Fatal(err)
	}
	return img
}

// fakeBases serves images by reference and platform.
type fakeBases map[string]v1.Image // "ref platform"

func (f fakeBases) Image(_ context.Context, ref name.Reference, p specs.Platform) (v1.Image, error) {
	if img, ok := f[ref.String()+" "+platform.Format(p)]; ok {
		return img, nil
	}
	return nil, fmt.Errorf("fake bases: no %s for %s", ref, platform.Format(p))
}

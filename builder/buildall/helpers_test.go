package buildall

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
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

	"kiln/builder"
	"kiln/builder/runner"
	"kiln/platform"
)

var (
	amd64 = platform.MustParse("linux/amd64")
	arm64 = platform.MustParse("linux/arm64")
	s390x = platform.MustParse("linux/s390x")
)

const (
	copyOnly = "FROM scratch\nARG TARGETARCH\nCOPY bin/${TARGETARCH}/app /app\n"
	runBuild = "FROM scratch AS build\nCOPY src /src\nRUN make\n\nFROM scratch\nCOPY --from=build /out /app\n"
)

// contextDir makes a build context holding dockerfile.
func contextDir(t *testing.T, dockerfile string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// binfmtDir makes a fake binfmt_misc mount with entries (name → state).
func binfmtDir(t *testing.T, entries map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for n, state := range entries {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(state+"\ninterpreter /usr/bin/"+n+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// fakeRunner builds a small deterministic image per job, or fails as told.
type fakeRunner struct {
	fail      map[string]error // "name platform" → error
	block     map[string]bool  // wait for the context to end
	jitter    bool             // sleep a little, at random, to shuffle completion order
	mediaType types.MediaType  // of the images; default OCI
	push      func(ctx context.Context, img v1.Image, ref name.Reference) error

	mu       sync.Mutex
	calls    []string
	released int
}

func (f *fakeRunner) Name() string { return "fake" }

func (f *fakeRunner) Run(ctx context.Context, job runner.Job) (*runner.Outcome, error) {
	key := job.Image + " " + platform.Format(job.Platform)
	f.mu.Lock()
	f.calls = append(f.calls, key)
	f.mu.Unlock()
	if job.Log != nil {
		fmt.Fprintf(job.Log, "line one of %s\nline two, ", key)
		fmt.Fprintf(job.Log, "split across writes\n")
	}
	if f.jitter {
		time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond)
	}
	if f.block[key] {
		<-ctx.Done()
		return nil, context.Cause(ctx)
	}
	if err := f.fail[key]; err != nil {
		return nil, err
	}
	img, err := fakeImage(key, job.Platform, f.mediaType)
	if err != nil {
		return nil, err
	}
	d, err := img.Digest()
	if err != nil {
		return nil, err
	}
	out := &runner.Outcome{Digest: d, Image: img, Where: "fake", Size: 42, Release: func() error {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.released++
		return nil
	}}
	if f.push != nil {
		if err := f.push(ctx, img, job.Tags[0].Context().Digest(d.String())); err != nil {
			return nil, err
		}
		out.Image = nil // it lives in the registry only
	}
	return out, nil
}

func (f *fakeRunner) called() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// fakeImage is an image for p holding one file named after key.
func fakeImage(key string, p specs.Platform, mt types.MediaType) (v1.Image, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "key", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(key))}); err != nil {
		return nil, err
	}
	if _, err := tw.Write([]byte(key)); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	manifestType, configType, layerType := types.OCIManifestSchema1, types.OCIConfigJSON, types.OCILayer
	if mt == types.DockerManifestSchema2 {
		manifestType, configType, layerType = types.DockerManifestSchema2, types.DockerConfigJSON, types.DockerLayer
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }, tarball.WithMediaType(layerType))
	if err != nil {
		return nil, err
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, manifestType), configType)
	img, err = mutate.ConfigFile(img, &v1.ConfigFile{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant, RootFS: v1.RootFS{Type: "layers"}})
	if err != nil {
		return nil, err
	}
	return mutate.AppendLayers(img, l)
}

// image is a build.toml image writing to an OCI layout in a temp folder.
func testImage(t *testing.T, imageName, dockerfile string, required, optional []specs.Platform) Image {
	t.Helper()
	return Image{
		Name: imageName, Request: builder.Request{Context: contextDir(t, dockerfile)},
		Platforms: required, OptionalPlatforms: optional,
		OCIDir: filepath.Join(t.TempDir(), "out", imageName),
	}
}

// newTest is a Coordinator on an amd64 host with a fake binfmt_misc that
// has no handlers.
func newTest(t *testing.T, r runner.Runner, opts ...Option) *Coordinator {
	t.Helper()
	base := []Option{WithHost(amd64), WithBinfmtDir(binfmtDir(t, nil)), WithTempDir(t.TempDir())}
	return New(r, append(base, opts...)...)
}

// planAndRun plans and runs, failing the test on an error of either.
func planAndRun(t *testing.T, c *Coordinator, images ...Image) (*Plan, *Report) {
	t.Helper()
	plan, err := c.Plan(t.Context(), images)
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	rep, err := c.Run(t.Context(), plan)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return plan, rep
}

// statuses reads "platform status" for each platform of an image result.
func statuses(im ImageResult) []string {
	var out []string
	for _, p := range im.Platforms {
		out = append(out, platform.Format(p.Platform)+" "+string(p.Status))
	}
	return out
}

var errBoom = errors.New("boom")

// goBinary cross-compiles a tiny static Go program for linux/arch.
func goBinary(t *testing.T, arch string) []byte {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go toolchain to cross-compile with")
	}
	src, out := t.TempDir(), filepath.Join(t.TempDir(), "app")
	for n, body := range map[string]string{"go.mod": "module hello\n\ngo 1.21\n", "main.go": "package main\n\nfunc main() { println(\"hello\") }\n"} {
		if err := os.WriteFile(filepath.Join(src, n), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+arch, "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build for %s: %v\n%s", arch, err, b)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

package runner

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"kiln/builder"
	"kiln/builder/archcheck"
	"kiln/builder/run"
	"kiln/manifest"
)

// TestLocalArchCheck: after the build, the binaries it added are checked
// against the platform; the base image's are not the build's business.
func TestLocalArchCheck(t *testing.T) {
	x86, arm := goBinary(t, "amd64"), goBinary(t, "arm64")
	bases := fakeBases{
		"base:1 linux/arm64": image(t, arm64, layer(t, map[string][]byte{"usr/bin/legacy": x86})),
		// A config that says arm64 over x86-64 programs.
		"liar:1 linux/arm64": image(t, arm64, layer(t, map[string][]byte{"bin/sh": x86, "bin/ls": x86, "usr/bin/env": x86, "usr/bin/app": arm})),
	}
	tests := []struct {
		name       string
		dockerfile string
		wantErr    string
		findings   int // 0: 1
	}{
		{name: "x86-64 binary COPied into an arm64 image", dockerfile: "FROM scratch\nCOPY app-amd64 /app\n", wantErr: "/app (x86-64, linux/amd64)"},
		{name: "arm64 binary in an arm64 image", dockerfile: "FROM scratch\nCOPY app-arm64 /app\n"},
		{name: "a foreign binary of the base image is not the build's", dockerfile: "FROM base:1\nCOPY app-arm64 /usr/bin/app\n"},
		{name: "a stage built on the base adds a foreign binary", dockerfile: "FROM base:1 AS b\nCOPY app-amd64 /usr/bin/app\nFROM b\nCOPY app-arm64 /usr/bin/other\n", wantErr: "/usr/bin/app (x86-64, linux/amd64)"},
		{name: "a base whose programs are mostly foreign", dockerfile: "FROM liar:1\nCOPY app-arm64 /usr/bin/mine\n", wantErr: "the base image's own programs are not for linux/arm64", findings: 3},
		{name: "COPY --from a stage with a foreign binary", dockerfile: "FROM scratch AS b\nCOPY app-amd64 /x\nFROM base:1\nCOPY --from=b /x /usr/bin/x\n", wantErr: "/usr/bin/x (x86-64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctxDir := t.TempDir()
			writeFiles(t, ctxDir, map[string]string{"Dockerfile": tt.dockerfile})
			writeFile(t, filepath.Join(ctxDir, "app-amd64"), x86, 0o755)
			writeFile(t, filepath.Join(ctxDir, "app-arm64"), arm, 0o755)
			l := NewLocal(WithBaseImages(bases), WithWorkDir(t.TempDir()))
			out, err := l.Run(t.Context(), Job{Image: "app", Platform: arm64, Request: builder.Request{Context: ctxDir, BuildPlatform: amd64}})
			defer out.Close()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
				return
			}
			var mm *archcheck.MismatchError
			if !errors.Is(err, archcheck.ErrForeignArchitecture) || !errors.As(err, &mm) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want a foreign-architecture error naming %q", err, tt.wantErr)
			}
			if want := max(tt.findings, 1); len(mm.Findings) != want {
				t.Errorf("findings %v, want %d: the one the build added, or the base's foreign programs", mm.Findings, want)
			}
		})
	}
}

// TestLocalRefusesForeignRun: a RUN for another architecture fails before
// the build starts, unless emulation is allowed and a handler registered,
// in which case the job reaches the builder and runs the step (which fails
// here: scratch has no /bin/sh).
func TestLocalRefusesForeignRun(t *testing.T) {
	ctxDir := t.TempDir()
	writeFiles(t, ctxDir, map[string]string{"Dockerfile": "FROM scratch AS build\nCOPY a /a\nRUN make\nFROM scratch\nCOPY --from=build /a /a\n", "a": "a"})
	job := Job{Image: "api", Platform: arm64, Request: builder.Request{Context: ctxDir, BuildPlatform: amd64}}
	handler := binfmtDir(t, map[string]string{"qemu-aarch64": "enabled"})
	tests := []struct {
		name    string
		opts    []LocalOption
		wantErr error
	}{
		{name: "no emulation", wantErr: ErrNeedsMatchingNode},
		{name: "emulation without a handler", opts: []LocalOption{WithAllowEmulation(true), WithBinfmtDir(t.TempDir())}, wantErr: ErrNeedsMatchingNode},
		{name: "emulation with a handler", opts: []LocalOption{WithAllowEmulation(true), WithBinfmtDir(handler)}, wantErr: run.ErrSetup},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			work := t.TempDir()
			var logs bytes.Buffer
			job.Log = &logs
			_, err := NewLocal(append(tt.opts, WithWorkDir(work))...).Run(t.Context(), job)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}
			if built := strings.Contains(logs.String(), "building stage"); built != (tt.wantErr == run.ErrSetup) {
				t.Errorf("the builder started: %v, log:\n%s", built, logs.String())
			}
			if left, _ := os.ReadDir(work); len(left) != 0 {
				t.Errorf("a failed job left %d entries in the work folder", len(left))
			}
		})
	}
}

// TestLocalOutcome: the outcome names the image; Close frees the job's
// work folder; with a client the image is pushed by digest, never tagged.
func TestLocalOutcome(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	tag, err := name.ParseReference(host + "/acme/app:1")
	if err != nil {
		t.Fatal(err)
	}
	client, err := manifest.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	ctxDir := t.TempDir()
	writeFiles(t, ctxDir, map[string]string{"Dockerfile": "FROM scratch\nCOPY a.txt /a.txt\n", "a.txt": "a\n"})
	work := t.TempDir()
	var logs bytes.Buffer
	l := NewLocal(WithWorkDir(work), WithClient(client))
	out, err := l.Run(t.Context(), Job{Image: "app", Platform: arm64, Request: builder.Request{Context: ctxDir}, Tags: []name.Reference{tag}, Log: &logs})
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := out.Image.Digest(); d != out.Digest || out.Where != "local" || out.Size <= 0 || out.Emulated {
		t.Errorf("outcome %+v (image digest %s)", out, d)
	}
	if !strings.Contains(logs.String(), "building stage") {
		t.Errorf("job log:\n%s", logs.String())
	}
	if _, err := remote.Head(tag.Context().Digest(out.Digest.String()), remote.WithContext(context.Background())); err != nil {
		t.Errorf("not pushed by digest: %v", err)
	}
	if _, err := remote.Head(tag, remote.WithContext(context.Background())); err == nil {
		t.Errorf("%s was tagged; a runner pushes by digest only", tag)
	}
	if left, _ := os.ReadDir(work); len(left) != 1 {
		t.Errorf("work folder holds %d entries, want the job's", len(left))
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(work); len(left) != 0 {
		t.Errorf("Close left %d entries in the work folder", len(left))
	}
}

func TestLocalStdinContext(t *testing.T) {
	_, err := NewLocal(WithWorkDir(t.TempDir())).Run(t.Context(), Job{Image: "app", Platform: amd64, Request: builder.Request{Context: "-"}})
	if !errors.Is(err, ErrStdinContext) {
		t.Errorf("error %v, want ErrStdinContext", err)
	}
}

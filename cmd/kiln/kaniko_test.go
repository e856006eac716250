package main

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/urfave/cli/v2"
)

// The flags of kaniko's executor and warmer, v1.24 (cmd/executor/cmd/root.go,
// cmd/warmer/cmd/root.go, with the deprecated names and the vendored azure
// flag), then the maintained forks' additions (osscontainertools/kaniko
// v1.28). owner says who makes kiln accept a flag while issue 14 is split:
// "" this change; "b" contexts; "c" registry TLS. README.md lists them all.
var kanikoExecutorFlags = []struct{ name, owner string }{
	{"verbosity", ""}, {"log-format", ""}, {"log-timestamp", ""}, {"force", ""},
	{"dockerfile", ""}, {"context", ""}, {"context-sub-path", "b"}, {"bucket", "b"},
	{"destination", ""}, {"snapshot-mode", ""}, {"custom-platform", ""}, {"build-arg", ""},
	{"insecure", "c"}, {"skip-tls-verify", "c"}, {"insecure-pull", "c"}, {"skip-tls-verify-pull", "c"},
	{"push-retry", ""}, {"push-ignore-immutable-tag-errors", ""}, {"image-fs-extract-retry", ""},
	{"image-download-retry", ""}, {"kaniko-dir", ""}, {"tar-path", ""}, {"single-snapshot", ""},
	{"reproducible", ""}, {"target", ""}, {"no-push", ""}, {"no-push-cache", ""}, {"cache-repo", ""},
	{"cache-dir", ""}, {"digest-file", ""}, {"image-name-with-digest-file", ""},
	{"image-name-tag-with-digest-file", ""}, {"oci-layout-path", ""}, {"compression", ""},
	{"compression-level", ""}, {"cache", ""}, {"compressed-caching", ""}, {"cleanup", ""},
	{"cache-ttl", ""}, {"insecure-registry", "c"}, {"skip-tls-verify-registry", "c"},
	{"registry-certificate", "c"}, {"registry-client-cert", "c"}, {"registry-map", "c"},
	{"registry-mirror", "c"}, {"skip-default-registry-fallback", "c"}, {"ignore-var-run", ""},
	{"label", ""}, {"skip-unused-stages", ""}, {"use-new-run", ""}, {"git", "b"},
	{"cache-copy-layers", ""}, {"cache-run-layers", ""}, {"ignore-path", ""},
	{"force-build-metadata", ""}, {"skip-push-permission-check", ""},
	{"snapshotMode", ""}, {"customPlatform", ""}, {"tarPath", ""}, {"whitelist-var-run", ""},
	{"azure-container-registry-config", ""},
	// the forks
	{"annotation", ""}, {"preserve-context", ""}, {"materialize", ""}, {"credential-helpers", ""},
	{"secret", ""}, {"dryrun", ""}, {"image-format", ""}, {"pre-cleanup", ""},
}

var kanikoWarmerFlags = []struct{ name, owner string }{
	{"verbosity", ""}, {"log-format", ""}, {"log-timestamp", ""}, {"image", ""}, {"cache-dir", ""},
	{"force", ""}, {"cache-ttl", ""}, {"insecure-pull", "c"}, {"skip-tls-verify-pull", "c"},
	{"insecure-registry", "c"}, {"skip-tls-verify-registry", "c"}, {"registry-certificate", "c"},
	{"registry-client-cert", "c"}, {"registry-map", "c"}, {"registry-mirror", "c"},
	{"skip-default-registry-fallback", "c"}, {"customPlatform", ""}, {"dockerfile", ""}, {"build-arg", ""},
}

func commandFlagNames(t *testing.T, command string) map[string]bool {
	t.Helper()
	for _, c := range newApp().Commands {
		if c.Name == command {
			names := map[string]bool{}
			for _, f := range c.Flags {
				for _, n := range f.Names() {
					if names[n] {
						t.Errorf("kiln %s: two flags are named %s", command, n)
					}
					names[n] = true
				}
			}
			return names
		}
	}
	t.Fatalf("no command %s", command)
	return nil
}

// TestFlagNamesUnique: no command gives one name (or letter) to two flags.
func TestFlagNamesUnique(t *testing.T) {
	var walk func(prefix string, cmds []*cli.Command)
	walk = func(prefix string, cmds []*cli.Command) {
		for _, c := range cmds {
			names := map[string]bool{}
			for _, f := range c.Flags {
				for _, n := range f.Names() {
					if names[n] {
						t.Errorf("kiln %s%s: two flags are named %s", prefix, c.Name, n)
					}
					names[n] = true
				}
			}
			walk(prefix+c.Name+" ", c.Subcommands)
		}
	}
	walk("", newApp().Commands)
}

func TestKanikoFlagsAccepted(t *testing.T) {
	for _, tc := range []struct {
		command string
		flags   []struct{ name, owner string }
	}{{"build", kanikoExecutorFlags}, {"warm", kanikoWarmerFlags}} {
		names := commandFlagNames(t, tc.command)
		for _, f := range tc.flags {
			if !names[f.name] {
				t.Errorf("kiln %s does not accept kaniko's --%s", tc.command, f.name)
			}
		}
	}
}

func TestKanikoShortFlags(t *testing.T) {
	tests := []struct {
		command string
		want    map[string]string // letter → flag
	}{
		{"build", map[string]string{"c": "context", "f": "dockerfile", "d": "destination", "v": "verbosity", "o": "output"}},
		{"warm", map[string]string{"c": "cache-dir", "i": "image", "f": "force", "d": "dockerfile", "v": "verbosity"}},
		{"build-all", map[string]string{"c": "config", "v": "verbosity"}},
	}
	for _, tt := range tests {
		t.Run(tt.command, func(t *testing.T) {
			got := map[string]string{}
			for _, c := range newApp().Commands {
				if c.Name != tt.command {
					continue
				}
				for _, f := range c.Flags {
					names := f.Names()
					for _, n := range names[1:] {
						if len(n) == 1 {
							got[n] = names[0]
						}
					}
				}
			}
			for l, want := range tt.want {
				if got[l] != want {
					t.Errorf("-%s is --%s, want --%s", l, got[l], want)
				}
			}
		})
	}
}

// runApp runs kiln with args and returns stdout and the error.
func runApp(t *testing.T, args ...string) (string, error) {
	t.Helper()
	app := newApp()
	var out, errOut bytes.Buffer
	app.Writer, app.ErrWriter = &out, &errOut
	err := app.Run(reorderArgs(app, append([]string{"kiln"}, args...)))
	if errOut.Len() > 0 {
		t.Logf("stderr:\n%s", errOut.String())
	}
	return out.String(), err
}

// TestKanikoBuildFlags runs kiln build --dryrun: the plan shows what the
// kaniko flags became.
func TestKanikoBuildFlags(t *testing.T) {
	ctxDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte("ARG BASE=alpine:3.20\nFROM ${BASE} AS a\nFROM a AS b\nFROM busybox:1.36\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ctxDir, "Other.Dockerfile"), []byte("FROM debian:12\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	layout := filepath.Join(t.TempDir(), "layout")
	tests := []struct {
		name    string
		args    []string
		want    []string
		wantErr string
	}{
		{name: "custom platform", args: []string{"--custom-platform=linux/arm64"}, want: []string{"for linux/arm64", "base busybox:1.36 (linux/arm64)"}},
		{name: "old name", args: []string{"--customPlatform", "linux/arm64"}, want: []string{"for linux/arm64"}},
		{name: "same platform twice", args: []string{"--custom-platform=linux/arm64", "--platform=linux/arm64"}, want: []string{"for linux/arm64"}},
		{name: "platforms disagree", args: []string{"--custom-platform=linux/arm64", "--platform=linux/amd64"}, wantErr: "disagree"},
		{name: "short flags", args: []string{"-f", "Other.Dockerfile", "-d", "registry.example.com/a/b:1", "-v", "debug"},
			want: []string{"(Other.Dockerfile)", "base debian:12", "would push registry.example.com/a/b:1"}},
		{name: "oci layout path", args: []string{"--oci-layout-path", layout, "--no-push"}, want: []string{"would write oci:" + layout}},
		{name: "tarPath", args: []string{"--tarPath=x.tar", "--no-push"}, want: []string{"would write x.tar"}},
		{name: "targets", args: []string{"--target=a,b"}, want: []string{"target a)", "base alpine:3.20"}},
		{name: "build arg", args: []string{"--build-arg=BASE=alpine:3.21", "--target=b"}, want: []string{"base alpine:3.21"}},
		{name: "snapshot modes", args: []string{"--snapshot-mode=redo"}, want: []string{"would write oci:out/image"}},
		{name: "notices", args: []string{"--use-new-run", "--cleanup", "--single-snapshot", "--skip-unused-stages=false", "--compressed-caching=false",
			"--credential-helpers=ecr", "--azure-container-registry-config=/x", "--preserve-context", "--materialize", "--pre-cleanup", "--force-build-metadata"},
			want: []string{"dry run"}},
		{name: "kaniko values", args: []string{"--compression=zstd", "--compression-level=9", "--image-format=oci", "--annotation=a=b",
			"--ignore-path=/tmp/x", "--whitelist-var-run", "--push-retry=3", "--image-download-retry=9", "--image-fs-extract-retry=2",
			"--push-ignore-immutable-tag-errors", "--no-push-cache", "--log-format=color", "--log-timestamp=false", "--verbosity=trace"},
			want: []string{"dry run"}},
		{name: "old snapshot mode name", args: []string{"--snapshotMode=time", "--ignore-var-run=false"}, want: []string{"dry run"}},
		{name: "bad snapshot mode", args: []string{"--snapshot-mode=fast"}, wantErr: "--snapshot-mode"},
		{name: "bad compression", args: []string{"--compression=brotli"}, wantErr: "--compression"},
		{name: "bad compression level", args: []string{"--compression-level=10"}, wantErr: "--compression-level"},
		{name: "bad image format", args: []string{"--image-format=v1"}, wantErr: "--image-format"},
		{name: "bad annotation", args: []string{"--annotation=novalue"}, wantErr: "--annotation"},
		{name: "relative ignore path", args: []string{"--ignore-path=tmp"}, wantErr: "--ignore-path"},
		{name: "negative push retry", args: []string{"--push-retry=-1"}, wantErr: "--push-retry"},
		{name: "name digest file without destination", args: []string{"--image-name-with-digest-file=f"}, wantErr: "give --destination"},
		{name: "bad verbosity", args: []string{"--verbosity=loud"}, wantErr: "--verbosity"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"build", "--dryrun", "--context", ctxDir}, tt.args...)
			out, err := runApp(t, args...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("kiln %s: error %v, want one saying %q", strings.Join(args, " "), err, tt.wantErr)
				}
				var ec cli.ExitCoder
				if !errors.As(err, &ec) || ec.ExitCode() != exitUsage {
					t.Errorf("error %v: want exit status %d", err, exitUsage)
				}
				return
			}
			if err != nil {
				t.Fatalf("kiln %s: %v", strings.Join(args, " "), err)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("kiln %s printed\n%s\nwant %q in it", strings.Join(args, " "), out, w)
				}
			}
		})
	}
}

func TestKanikoDryRunWritesNothing(t *testing.T) {
	ctxDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte("FROM scratch\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	files := filepath.Join(t.TempDir(), "files")
	kdir := filepath.Join(t.TempDir(), "kaniko")
	_, err := runApp(t, "build", "--dryrun", "-c", ctxDir, "--digest-file", filepath.Join(files, "d"), "--oci-layout-path", filepath.Join(files, "l"), "--kaniko-dir", kdir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(files); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a dry run wrote %s (%v)", files, err)
	}
	if _, err := os.Stat(kdir); err != nil {
		t.Errorf("--kaniko-dir %s was not made, as kaniko makes it: %v", kdir, err)
	}
}

func TestKanikoDigestLines(t *testing.T) {
	h := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}
	var dests []name.Reference
	for _, r := range []string{"registry.example.com/a/app:1.0", "registry.example.com/a/app:latest", "busybox", "registry.example.com/b@" + h.String()} {
		ref, err := name.ParseReference(r)
		if err != nil {
			t.Fatal(err)
		}
		dests = append(dests, ref)
	}
	d := h.String()
	if got, want := kanikoDigestLines(dests, h, false),
		"registry.example.com/a/app@"+d+"\nregistry.example.com/a/app@"+d+"\nindex.docker.io/library/busybox@"+d+"\nregistry.example.com/b@"+d+"\n"; got != want {
		t.Errorf("image-name-with-digest-file:\n%s\nwant\n%s", got, want)
	}
	if got, want := kanikoDigestLines(dests, h, true),
		"registry.example.com/a/app:1.0@"+d+"\nregistry.example.com/a/app:latest@"+d+"\nindex.docker.io/library/busybox:latest@"+d+"\nregistry.example.com/b@"+d+"\n"; got != want {
		t.Errorf("image-name-tag-with-digest-file:\n%s\nwant\n%s", got, want)
	}
}

func TestConvertFormat(t *testing.T) {
	docker, err := random.Image(256, 3)
	if err != nil {
		t.Fatal(err)
	}
	if mt, _ := docker.MediaType(); mt != types.DockerManifestSchema2 {
		t.Fatalf("random.Image is %s, the test wants a Docker image", mt)
	}
	oci, err := convertFormat(docker, true)
	if err != nil {
		t.Fatal(err)
	}
	m, err := oci.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.OCIManifestSchema1 || m.Config.MediaType != types.OCIConfigJSON {
		t.Errorf("converted manifest %s, config %s: want OCI", m.MediaType, m.Config.MediaType)
	}
	dm, _ := docker.Manifest()
	for i, l := range m.Layers {
		if l.MediaType != types.OCILayer || l.Digest != dm.Layers[i].Digest {
			t.Errorf("layer %d: %s %s, want %s %s", i, l.MediaType, l.Digest, types.OCILayer, dm.Layers[i].Digest)
		}
	}
	if m.Config.Digest != dm.Config.Digest {
		t.Errorf("the config changed: %s, was %s", m.Config.Digest, dm.Config.Digest)
	}
	back, err := convertFormat(oci, false)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := back.Digest(); got != must(docker.Digest()) {
		t.Errorf("docker → oci → docker gives %s, not the original %s", got, must(docker.Digest()))
	}
	if same, err := convertFormat(docker, false); err != nil || same != docker {
		t.Errorf("converting to the format the image has: %v, %v; want the image itself", same, err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestImmutableTagError(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{errors.New("PUT https://x/v2/a/manifests/1: TAG_INVALID: The image tag '1' already exists in the 'a' repository and cannot be overwritten because the repository is immutable."), true},
		{errors.New("MANIFEST_INVALID: The repository has enabled tag immutability."), true},
		{errors.New("UNAUTHORIZED: authentication required"), false},
	}
	for _, tt := range tests {
		if got := immutableTagError(tt.err); got != tt.want {
			t.Errorf("immutableTagError(%q) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestVerbosity(t *testing.T) {
	tests := []struct {
		verbosity string
		shown     []slog.Level
		hidden    []slog.Level
	}{
		{"trace", []slog.Level{levelTrace, slog.LevelDebug}, nil},
		{"debug", []slog.Level{slog.LevelDebug, slog.LevelInfo}, []slog.Level{levelTrace}},
		{"info", []slog.Level{slog.LevelInfo, slog.LevelWarn}, []slog.Level{slog.LevelDebug}},
		{"warn", []slog.Level{slog.LevelWarn}, []slog.Level{slog.LevelInfo}},
		{"ERROR", []slog.Level{slog.LevelError}, []slog.Level{slog.LevelWarn}},
		{"fatal", nil, []slog.Level{slog.LevelError}},
		{"panic", nil, []slog.Level{slog.LevelError}},
	}
	for _, tt := range tests {
		t.Run(tt.verbosity, func(t *testing.T) {
			lo := logOptions{level: verbosityLevels[strings.ToLower(tt.verbosity)], levelSet: true}
			var buf bytes.Buffer
			log := lo.logger(&buf)
			for _, l := range tt.shown {
				buf.Reset()
				log.Log(t.Context(), l, "m")
				if buf.Len() == 0 {
					t.Errorf("--verbosity %s hides a %s line", tt.verbosity, l)
				}
			}
			for _, l := range tt.hidden {
				buf.Reset()
				log.Log(t.Context(), l, "m")
				if buf.Len() != 0 {
					t.Errorf("--verbosity %s shows a %s line: %s", tt.verbosity, l, buf.String())
				}
			}
		})
	}
	var buf bytes.Buffer
	logOptions{level: levelTrace}.logger(&buf).Log(t.Context(), levelTrace, "m")
	if !strings.HasPrefix(buf.String(), "level=TRACE ") {
		t.Errorf("a trace line without a time stamp: %q, want it to start with level=TRACE", buf.String())
	}
	buf.Reset()
	logOptions{level: slog.LevelInfo, timestamp: true, json: true}.logger(&buf).Info("m")
	if !strings.Contains(buf.String(), `"time":`) {
		t.Errorf("a JSON line with time stamps: %q", buf.String())
	}
}

func TestKanikoWarmFlags(t *testing.T) {
	df := filepath.Join(t.TempDir(), "Dockerfile")
	if err := os.WriteFile(df, []byte("ARG V=1\nFROM registry.example.com/base:${V}\nFROM scratch\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "build-arg without dockerfile", args: []string{"--build-arg", "V=2", "-i", "busybox"}, wantErr: "goes with --dockerfile"},
		{name: "missing dockerfile", args: []string{"-d", filepath.Join(t.TempDir(), "nope")}, wantErr: "--dockerfile"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := runApp(t, append([]string{"warm", "-c", t.TempDir()}, tt.args...)...)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one saying %q", err, tt.wantErr)
			}
		})
	}
	// The Dockerfile's bases for every platform, ARGs from --build-arg.
	app := newApp()
	var plan *warmPlan
	for _, c := range app.Commands {
		if c.Name == "warm" {
			c.Action = func(c *cli.Context) error {
				if _, err := applyKanikoWarm(c); err != nil {
					return err
				}
				var err error
				plan, err = planWarm(c)
				return err
			}
		}
	}
	app.Writer, app.ErrWriter = &bytes.Buffer{}, &bytes.Buffer{}
	if err := app.Run([]string{"kiln", "warm", "-c", t.TempDir(), "-d", df, "--build-arg", "V=2", "--customPlatform", "linux/arm64", "--platform", "linux/amd64", "-f"}); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, it := range plan.items {
		got = append(got, it.Ref+" "+it.Platform.Architecture)
	}
	slices.Sort(got)
	if want := []string{"registry.example.com/base:2 amd64", "registry.example.com/base:2 arm64"}; !slices.Equal(got, want) {
		t.Errorf("warm items %v, want %v", got, want)
	}
	if plan.maxAge != 0 {
		t.Errorf("--force: max age %s, want 0 (every tag re-checked)", plan.maxAge)
	}
}

// writeFiles makes name → content under dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

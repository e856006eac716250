package test

import (
	"encoding/base64"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"kiln/test/harness"
)

// TestBuildBasePlatformMismatch: FROM an amd64-only image for linux/arm64 is
// refused (exit 2, the line, the image, both platforms, nothing pushed);
// with --allow-platform-mismatch it builds, and the summary and metadata
// file say so. build-all refuses it up front, --plan included: no index.
func TestBuildBasePlatformMismatch(t *testing.T) {
	t.Parallel()
	reg := harness.NewRegistry(t)
	base := reg.Ref("only/amd64:1")
	pushHandImage(t, base, handImage(t, "linux/amd64", v1.Config{}, handLayer(t, ldir("etc"), lfile("etc/os", "amd64\n"))))
	ctxDir := t.TempDir()
	writeContext(t, ctxDir, map[string]string{"Dockerfile": "FROM " + base + "\nCOPY a.txt /a.txt\n", "a.txt": "a\n"})

	dest := reg.Ref("out/mismatch:1")
	r := runKiln(t, "build", "--context", ctxDir, "--platform", "linux/arm64", "--destination", dest)
	mustExit(t, r, 2)
	for _, want := range []string{"Dockerfile:1", base, "linux/amd64", "linux/arm64", "--allow-platform-mismatch"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("the refusal should name %q:\n%s", want, r.stderr)
		}
	}
	if tagExists(t, dest) {
		t.Error("an arm64 image with amd64 files was pushed")
	}

	md := filepath.Join(t.TempDir(), "md.json")
	r = runKiln(t, "build", "--context", ctxDir, "--platform", "linux/arm64", "--allow-platform-mismatch",
		"--destination", dest, "--metadata-file", md)
	mustExit(t, r, 0)
	if !strings.Contains(r.stdout, "WARNING: built on a base of another platform") {
		t.Errorf("the summary should say the base is of another platform:\n%s", r.stdout)
	}
	var meta struct {
		PlatformMismatches []string `json:"platform_mismatches"`
	}
	data, err := os.ReadFile(md)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &meta); err != nil || len(meta.PlatformMismatches) != 1 || !strings.Contains(meta.PlatformMismatches[0], "linux/amd64") {
		t.Errorf("metadata platform_mismatches = %v (%v), want the base named", meta.PlatformMismatches, err)
	}

	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"app/Dockerfile": "FROM " + base + "\nCOPY a.txt /a.txt\n",
		"app/a.txt":      "a\n",
		"build.toml": `[registries."REGISTRY"]
insecure = true

[images.app]
context = "app"
platforms = ["linux/amd64", "linux/arm64"]
tags = ["REGISTRY/out/all:1"]
`,
	}, "REGISTRY", reg.Addr)
	plan := runKilnOpts(t, runOpts{dir: dir}, "build-all", "--plan")
	mustExit(t, plan, 1)
	if !strings.Contains(plan.output(), "is for linux/amd64, not linux/arm64") {
		t.Errorf("--plan should show the mismatch:\n%s", plan)
	}
	r = runKilnOpts(t, runOpts{dir: dir}, "build-all")
	mustExit(t, r, 1)
	if strings.Contains(r.stderr, "[app linux/amd64]") {
		t.Errorf("amd64 was built although the image fails up front:\n%s", r.stderr)
	}
	idxAbsent(t, reg.Ref("out/all:1"))
}

// TestBuildOutputInsideContext: the default output (./out/<name>) lies in
// the context `kiln build --context .` reads; it is left out, loudly, so
// three builds in a row give one digest instead of an image that grows.
func TestBuildOutputInsideContext(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeContext(t, dir, map[string]string{"Dockerfile": "FROM scratch\nCOPY . /src\n"})
	randomFile(t, filepath.Join(dir, "data.bin"), 1<<20, 3)
	digest := regexp.MustCompile(`built image for \S+: (sha256:[0-9a-f]{64})`)
	var first string
	for i := range 3 {
		r := runKilnOpts(t, runOpts{dir: dir}, "build", "--context", ".", "--reproducible")
		mustExit(t, r, 0)
		m := digest.FindStringSubmatch(r.stdout)
		if m == nil {
			t.Fatalf("no digest in the summary:\n%s", r)
		}
		if i == 0 {
			first = m[1]
			if !strings.Contains(r.stderr, "left out of the context") {
				t.Errorf("the exclusion should be said:\n%s", r.stderr)
			}
		} else if m[1] != first {
			t.Fatalf("build %d gave %s, the first %s: the output went into the context", i+1, m[1], first)
		}
	}
}

// TestPushAccessCheckedFirst: a destination that refuses the credentials
// fails the build in seconds, before a RUN that would sleep a minute, with
// the registry's answer and where credentials were read; a registry nobody
// listens on fails as fast.
func TestPushAccessCheckedFirst(t *testing.T) {
	t.Parallel()
	bases := harness.NewRegistry(t)
	busybox, _ := pushBusyboxBase(t, bases.Addr)
	private := harness.NewRegistryWithAuth(t, "kiln", "right-Passw0rd")
	dockerDir := t.TempDir()
	cfg, _ := json.Marshal(map[string]any{"auths": map[string]any{
		private.Addr: map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte("kiln:wrong"))},
	}})
	if err := os.WriteFile(filepath.Join(dockerDir, "config.json"), cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	ctxDir := t.TempDir()
	writeContext(t, ctxDir, map[string]string{"Dockerfile": "FROM " + busybox + "\nRUN sleep 60\n"})
	for name, dest := range map[string]string{
		"wrong credentials": private.Ref("app/x:1"),
		"nobody listening":  freeLoopbackAddr(t) + "/app/x:1",
	} {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			r := runKilnOpts(t, runOpts{env: []string{"DOCKER_CONFIG=" + dockerDir}}, "build", "--context", ctxDir, "--destination", dest)
			took := time.Since(start)
			mustExit(t, r, 1)
			if took > 5*time.Second {
				t.Errorf("failed after %v: the push check should come before the RUN", took.Round(time.Millisecond))
			}
			if !strings.Contains(r.stderr, "no push access") {
				t.Errorf("want the push check's error:\n%s", r.stderr)
			}
			if name == "wrong credentials" && (!strings.Contains(r.stderr, filepath.Join(dockerDir, "config.json")) || !strings.Contains(r.stderr, "UNAUTHORIZED")) {
				t.Errorf("want the registry's answer and the credentials file:\n%s", r.stderr)
			}
			t.Logf("in %v: %s", took.Round(time.Millisecond), lastLines(r.stderr, 1))
		})
	}
}

// freeLoopbackAddr is a 127.0.0.1 port nothing listens on (it was free a
// moment ago).
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestBuildConfigWithoutName: `kiln build --config F` with no NAME builds
// from the flags but takes F's [cache] (and [registries.*]): an offline
// build finds its base in the cache F names.
func TestBuildConfigWithoutName(t *testing.T) {
	t.Parallel()
	reg := harness.NewRegistry(t)
	base := reg.Ref("cfg/base:1")
	pushHandImage(t, base, handImage(t, "linux/amd64", v1.Config{}, handLayer(t, ldir("etc"), lfile("etc/os", "x\n"))))
	dir := t.TempDir()
	cache := filepath.Join(dir, "cache")
	mustExit(t, runKiln(t, "warm", "--cache-dir", cache, "--platform", "linux/amd64", "--image", base), 0)
	writeFiles(t, dir, map[string]string{
		"build.toml":     "[cache]\ndir = \"cache\"\n\n[registries.\"REGISTRY\"]\ninsecure = true\n",
		"ctx/Dockerfile": "FROM " + base + "\nCOPY a /a\n",
		"ctx/a":          "a\n",
	}, "REGISTRY", reg.Addr)
	r := runKilnOpts(t, runOpts{dir: dir}, "build", "--config", "build.toml", "--context", "ctx", "--platform", "linux/amd64",
		"--offline", "--output", "oci:"+filepath.Join(t.TempDir(), "out"))
	mustExit(t, r, 0)
}

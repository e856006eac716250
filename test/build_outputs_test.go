package test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"kiln/test/harness"
)

// buildMeta is the JSON `kiln build --metadata-file` writes (the contract,
// spelled out here as any reader of the file would).
type buildMeta struct {
	Image        string   `json:"image"`
	Digest       string   `json:"digest"`
	ConfigDigest string   `json:"config_digest"`
	Platform     string   `json:"platform"`
	Tags         []string `json:"tags"`
	Pushed       bool     `json:"pushed"`
	OCILayout    string   `json:"oci_layout"`
	Tarball      string   `json:"tarball"`
	Size         int64    `json:"size"`
}

func readBuildMeta(t *testing.T, path string) buildMeta {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("metadata file: %v", err)
	}
	var m buildMeta
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("metadata file %s: %v\n%s", path, err, data)
	}
	return m
}

// TestBuildOutputs builds once to two registry tags, an OCI layout and a
// docker-load tarball, and has other tools read each: skopeo and
// go-containerregistry the registry, skopeo and umoci the layout,
// go-containerregistry's tarball reader (and docker load, where an engine
// runs) the tarball. Every reader must see the digest --digest-file names
// and the files the Dockerfile put there.
func TestBuildOutputs(t *testing.T) {
	t.Parallel()
	reg := harness.NewRegistry(t)
	pushBaseImages(t, reg.Addr)
	ctxDir := t.TempDir()
	writeContext(t, ctxDir, map[string]string{
		"Dockerfile": "FROM " + reg.Addr + "/library/base:1\n" +
			"COPY app.txt /app/\nCOPY conf /etc/app/\nENV MODE=prod\nWORKDIR /app\n" +
			"ENTRYPOINT [\"/app/run\"]\nCMD [\"--serve\"]\nLABEL org.example.test=outputs\n",
		"app.txt":     "hello from kiln\n",
		"conf/a.conf": "a=1\n",
	})
	tags := []string{reg.Ref("interop/app:1.0"), reg.Ref("interop/app:latest")}
	out := t.TempDir()
	layoutDir, tarPath := filepath.Join(out, "layout"), filepath.Join(out, "image.tar")
	digestFile, metaFile := filepath.Join(out, "digest"), filepath.Join(out, "meta.json")
	r := runKiln(t, "build", "--context", ctxDir, "--destination", tags[0], "--destination", tags[1],
		"--output", "oci:"+layoutDir, "--tar-path", tarPath, "--digest-file", digestFile, "--metadata-file", metaFile)
	mustExit(t, r, 0)
	digest := readDigestFile(t, digestFile)
	if !strings.Contains(r.stdout, digest.String()) {
		t.Errorf("the summary does not print the digest %s:\n%s", digest, r)
	}

	meta := readBuildMeta(t, metaFile)
	if meta.Digest != digest.String() || !meta.Pushed || meta.Platform != "linux/amd64" || !slices.Equal(meta.Tags, tags) ||
		meta.OCILayout != layoutDir || meta.Tarball != tarPath || meta.Size <= 0 {
		t.Errorf("metadata %+v: want digest %s, pushed, linux/amd64, tags %v, the layout and tarball paths, a size", meta, digest, tags)
	}

	// The layout's image is the reference every other reader is held to.
	refName := tags[0] // kiln names the layout image after its first tag
	want := layoutImage(t, layoutDir, refName)
	if h, _ := want.Digest(); h != digest {
		t.Fatalf("the OCI layout holds %s, --digest-file says %s", h, digest)
	}
	if err := validate.Image(want); err != nil {
		t.Errorf("validate.Image on the layout's image: %v", err)
	}
	if c, _ := want.ConfigName(); c.String() != meta.ConfigDigest {
		t.Errorf("metadata config_digest %s, the image's config is %s", meta.ConfigDigest, c)
	}
	wantTree, _ := flatten(t, want)
	checkOutputTree(t, wantTree)

	t.Run("registry", func(t *testing.T) {
		t.Parallel()
		for _, tag := range tags {
			ref, err := name.ParseReference(tag, name.Insecure)
			if err != nil {
				t.Fatal(err)
			}
			img, err := remote.Image(ref, remote.WithContext(t.Context()))
			if err != nil {
				t.Fatalf("pulling %s: %v", tag, err)
			}
			if h, _ := img.Digest(); h != digest {
				t.Errorf("%s is %s, --digest-file says %s", tag, h, digest)
			}
			if err := validate.Image(img); err != nil {
				t.Errorf("%s: validate.Image: %v", tag, err)
			}
		}
		if _, err := exec.LookPath("skopeo"); err != nil {
			t.Skip("skopeo is not installed: skipping its reads")
		}
		for _, tag := range tags {
			raw := runTool(t, "", "skopeo", "inspect", "--raw", "--tls-verify=false", "docker://"+tag)
			if got := sha256Hex(raw); "sha256:"+got != digest.String() {
				t.Errorf("skopeo inspect --raw docker://%s: manifest hashes to sha256:%s, want %s", tag, got, digest)
			}
			var info struct {
				Digest       string
				Architecture string
				Os           string
				Labels       map[string]string
			}
			js := runTool(t, "", "skopeo", "inspect", "--tls-verify=false", "docker://"+tag)
			if err := json.Unmarshal([]byte(js), &info); err != nil {
				t.Fatalf("skopeo inspect docker://%s: %v\n%s", tag, err, js)
			}
			if info.Digest != digest.String() || info.Architecture != "amd64" || info.Os != "linux" || info.Labels["org.example.test"] != "outputs" {
				t.Errorf("skopeo inspect docker://%s: %+v, want digest %s, linux/amd64, label org.example.test=outputs", tag, info, digest)
			}
		}
	})

	t.Run("oci layout with skopeo", func(t *testing.T) {
		t.Parallel()
		needTool(t, "skopeo")
		raw := runTool(t, "", "skopeo", "inspect", "--raw", "oci:"+layoutDir+":"+refName)
		if got := sha256Hex(raw); "sha256:"+got != digest.String() {
			t.Errorf("skopeo inspect --raw oci:%s:%s: manifest hashes to sha256:%s, want %s", layoutDir, refName, got, digest)
		}
		// skopeo copies it on, which reads every blob and checks its digest.
		dst := filepath.Join(t.TempDir(), "copy")
		runTool(t, "", "skopeo", "copy", "oci:"+layoutDir+":"+refName, "oci:"+dst+":copied")
		copied := layoutImage(t, dst, "copied")
		if got, _ := flatten(t, copied); !slices.Equal(got, wantTree) {
			t.Errorf("skopeo's copy of the layout has another file tree:\n%s", strings.Join(diffTrees(wantTree, got), "\n"))
		}
	})

	t.Run("oci layout with umoci", func(t *testing.T) {
		t.Parallel()
		needTool(t, "umoci")
		stat := runTool(t, "", "umoci", "stat", "--json", "--image", layoutDir+":"+refName)
		if !strings.Contains(stat, "COPY app.txt /app/") {
			t.Errorf("umoci stat shows no history entry for the COPY:\n%s", stat)
		}
		bundle := filepath.Join(t.TempDir(), "bundle")
		runTool(t, "", "umoci", "unpack", "--rootless", "--image", layoutDir+":"+refName, bundle)
		rootfs := filepath.Join(bundle, "rootfs")
		for p, body := range map[string]string{"app/app.txt": "hello from kiln\n", "etc/app/a.conf": "a=1\n", "etc/arch": "amd64\n"} {
			data, err := os.ReadFile(filepath.Join(rootfs, p))
			if err != nil || string(data) != body {
				t.Errorf("umoci unpack: /%s holds %q (%v), want %q", p, data, err, body)
			}
		}
		if target, err := os.Readlink(filepath.Join(rootfs, "var/run")); err != nil || target != "/run" {
			t.Errorf("umoci unpack: /var/run → %q (%v), want a symlink to /run", target, err)
		}
		var spec struct {
			Process struct {
				Args []string
				Env  []string
				Cwd  string
			}
		}
		data, err := os.ReadFile(filepath.Join(bundle, "config.json"))
		if err == nil {
			err = json.Unmarshal(data, &spec)
		}
		if err != nil {
			t.Fatalf("umoci's runtime config: %v", err)
		}
		if !slices.Equal(spec.Process.Args, []string{"/app/run", "--serve"}) || spec.Process.Cwd != "/app" || !slices.Contains(spec.Process.Env, "MODE=prod") {
			t.Errorf("umoci's runtime config: args %q, cwd %q, env %q; want [/app/run --serve], /app, MODE=prod", spec.Process.Args, spec.Process.Cwd, spec.Process.Env)
		}
	})

	t.Run("tarball", func(t *testing.T) {
		t.Parallel()
		for _, tag := range tags {
			tg, err := name.NewTag(tag)
			if err != nil {
				t.Fatal(err)
			}
			img, err := tarball.ImageFromPath(tarPath, &tg)
			if err != nil {
				t.Fatalf("tarball.ImageFromPath(%s, %s): %v", tarPath, tag, err)
			}
			if c, _ := img.ConfigName(); c.String() != meta.ConfigDigest {
				t.Errorf("the tarball's %s has config %s, want %s", tag, c, meta.ConfigDigest)
			}
			if err := validate.Image(img); err != nil {
				t.Errorf("the tarball's %s: validate.Image: %v", tag, err)
			}
			if got, _ := flatten(t, img); !slices.Equal(got, wantTree) {
				t.Errorf("the tarball's %s has another file tree:\n%s", tag, strings.Join(diffTrees(wantTree, got), "\n"))
			}
		}
	})

	t.Run("docker load", func(t *testing.T) {
		t.Parallel()
		dockerLoad(t, tarPath, tags[0])
	})
}

// checkOutputTree checks what TestBuildOutputs' Dockerfile put in the image.
func checkOutputTree(t *testing.T, tree []fsEntry) {
	t.Helper()
	files := byPath(tree)
	for p, body := range map[string]string{"/app/app.txt": "hello from kiln\n", "/etc/app/a.conf": "a=1\n", "/etc/arch": "amd64\n"} {
		if e, ok := files[p]; !ok || e.Type != "file" || e.SHA256 != sha256Hex(body)[:16] {
			t.Errorf("%s: %v, want a file holding %q", p, e, body)
		}
	}
	if e := files["/var/run"]; e.Type != "symlink" || e.Link != "/run" {
		t.Errorf("/var/run: %v, want the base's symlink to /run", e)
	}
}

// dockerLoad loads the tarball into a Docker engine when one answers; it
// skips otherwise.
func dockerLoad(t *testing.T, tarPath, tag string) {
	t.Helper()
	if _, err := os.Stat("/var/run/docker.sock"); err != nil && os.Getenv("DOCKER_HOST") == "" {
		t.Skip("no Docker engine (no /var/run/docker.sock, no DOCKER_HOST): skipping docker load")
	}
	needTool(t, "docker")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := toolOutputCtx(ctx, t, "", "docker", "info"); err != nil {
		t.Skipf("the Docker engine does not answer (%v): skipping docker load", err)
	}
	out := runTool(t, "", "docker", "load", "-i", tarPath)
	if !strings.Contains(out, tag) {
		t.Errorf("docker load does not report %s:\n%s", tag, out)
	}
	_, _ = toolOutput(t, "", "docker", "rmi", tag)
}

func sha256Hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// digestOf is the digest of an image or fails the test.
func digestOf(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	h, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

package test

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"kiln/test/harness"
)

// TestBuildFromConfig builds [images.app] of testdata/build/config/build.toml
// (context and Dockerfile relative to the file, build args, labels, tags on
// the test registry, two platforms) from another working folder: the image
// is pushed to both tags for this machine's platform, and --metadata-file
// says so. --platform and --no-push --output override the file; an image
// name the file lacks is a usage error that lists the names it has.
func TestBuildFromConfig(t *testing.T) {
	t.Parallel()
	reg := harness.NewRegistry(t)
	pushBaseImages(t, reg.Addr)
	dir := t.TempDir()
	copyTestdata(t, "build/config", dir, "REGISTRY", reg.Addr)
	cfgFile := filepath.Join(dir, "build.toml")
	tags := []string{reg.Ref("config/app:1.2.3"), reg.Ref("config/app:latest")}

	meta := filepath.Join(t.TempDir(), "meta.json")
	mustExit(t, runKiln(t, "build", "--config", cfgFile, "--metadata-file", meta, "app"), 0)
	md := readBuildMeta(t, meta)
	if md.Image != "app" || md.Platform != "linux/amd64" || !md.Pushed || !slices.Equal(md.Tags, tags) {
		t.Errorf("metadata %+v: want image app, linux/amd64, pushed to %v", md, tags)
	}
	var pushed v1.Image
	for _, tag := range tags {
		img := remoteImage(t, tag)
		if h := digestOf(t, img); h.String() != md.Digest {
			t.Errorf("%s is %s, the metadata says %s", tag, h, md.Digest)
		}
		if c, _ := img.ConfigName(); c.String() != md.ConfigDigest {
			t.Errorf("%s has config %s, the metadata says %s", tag, c, md.ConfigDigest)
		}
		pushed = img
	}
	cf := configOf(t, pushed)
	c := cf.Config
	if cf.Architecture != "amd64" || !slices.Contains(c.Env, "APP_VERSION=1.2.3") || !slices.Contains(c.Env, "APP_ARCH=amd64") ||
		c.Labels["org.opencontainers.image.source"] != "https://example.com/acme/app" || c.Labels["org.opencontainers.image.version"] != "1.2.3" ||
		c.WorkingDir != "/srv" || !slices.Equal(c.Cmd, []string{"serve", "--root", "/srv/static"}) {
		t.Errorf("pushed config: arch %s, env %q, labels %v, workdir %q, cmd %q: want the args, labels and instructions of build.toml and Dockerfile.app",
			cf.Architecture, c.Env, c.Labels, c.WorkingDir, c.Cmd)
	}
	tree, _ := flatten(t, pushed)
	if e := byPath(tree)["/srv/static/index.html"]; e.SHA256 != sha256Hex("<h1>kiln</h1>\n")[:16] {
		t.Errorf("/srv/static/index.html: %v, want the context's file", e)
	}

	t.Run("flags override the file", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "oci")
		meta := filepath.Join(t.TempDir(), "meta.json")
		// Flags may come before and after NAME.
		mustExit(t, runKiln(t, "build", "--config", cfgFile, "app", "--platform", "linux/arm64", "--no-push",
			"--output", "oci:"+out, "--build-arg", "VERSION=2.0", "--metadata-file", meta), 0)
		md2 := readBuildMeta(t, meta)
		if md2.Pushed || md2.Platform != "linux/arm64" || md2.OCILayout != out {
			t.Errorf("metadata %+v: want not pushed, linux/arm64, the layout %s", md2, out)
		}
		cf := configOf(t, layoutImage(t, out, tags[0]))
		if cf.Architecture != "arm64" || !slices.Contains(cf.Config.Env, "APP_VERSION=2.0") || !slices.Contains(cf.Config.Env, "APP_ARCH=arm64") {
			t.Errorf("config: arch %s, env %q; want arm64 and --build-arg VERSION=2.0 over the file's", cf.Architecture, cf.Config.Env)
		}
		for _, tag := range tags {
			if h := digestOf(t, remoteImage(t, tag)); h.String() != md.Digest {
				t.Errorf("--no-push moved %s to %s", tag, h)
			}
		}
	})

	t.Run("unknown image", func(t *testing.T) {
		r := runKiln(t, "build", "--config", cfgFile, "nope")
		mustExit(t, r, 2)
		if !strings.Contains(r.stderr, "images.nope") || !strings.Contains(r.stderr, "app, other") {
			t.Errorf("the error should name [images.nope] and list app, other:\n%s", r)
		}
	})
}

// remoteImage pulls ref from a plain-HTTP registry.
func remoteImage(t *testing.T, ref string) v1.Image {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r, remote.WithContext(t.Context()))
	if err != nil {
		t.Fatalf("pulling %s: %v", ref, err)
	}
	return img
}

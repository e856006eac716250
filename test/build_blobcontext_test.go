package test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"kiln/builder/buildcontext"
	"kiln/manifest"
	"kiln/test/harness"
)

// TestBuildBlobContext: what a build-all Job's pod does. The context,
// packed as kiln packs it, is a blob in the registry; kiln build fetches it
// by digest (checked), builds, pushes the image by digest only (no tag in
// the repository) and writes its metadata where the Job's termination
// message is read. A digest the registry does not hold, or a context that
// is not a digest, fails with exit 1 or 2.
func TestBuildBlobContext(t *testing.T) {
	t.Parallel()
	reg := harness.NewRegistry(t)
	ctxDir := t.TempDir()
	writeContext(t, ctxDir, map[string]string{
		"Dockerfile":    "FROM scratch\nCOPY app.txt /app.txt\n",
		"app.txt":       "from the blob\n",
		"ignored.txt":   "never sent",
		".dockerignore": "ignored.txt\n",
	})
	c, err := buildcontext.Open(context.Background(), ctxDir, buildcontext.Options{})
	if err != nil {
		t.Fatal(err)
	}
	pack := filepath.Join(t.TempDir(), "ctx.tar.gz")
	var buf bytes.Buffer
	if err := c.Pack(&buf); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := os.WriteFile(pack, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	client, err := manifest.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	repo, err := name.NewRepository(reg.Addr + "/ci/contexts")
	if err != nil {
		t.Fatal(err)
	}
	digest, _, err := client.PushBlob(t.Context(), repo, pack)
	if err != nil {
		t.Fatal(err)
	}

	meta := filepath.Join(t.TempDir(), "termination-log")
	r := runKiln(t, "build", "--progress", "plain", "--context", "blob://"+repo.Name()+"@"+digest.String(),
		"--push-by-digest", "--destination", reg.Addr+"/acme/app", "--insecure-registry", reg.Addr,
		"--metadata-file", meta, "--work-dir", t.TempDir())
	mustExit(t, r, 0)
	var md struct {
		Digest   string `json:"digest"`
		Platform string `json:"platform"`
	}
	b, err := os.ReadFile(meta)
	if err != nil || json.Unmarshal(b, &md) != nil || !strings.HasPrefix(md.Digest, "sha256:") {
		t.Fatalf("metadata %q (%v); want JSON with the digest", b, err)
	}
	app, _ := name.NewRepository(reg.Addr + "/acme/app")
	img, err := remote.Image(app.Digest(md.Digest))
	if err != nil {
		t.Fatalf("the image is not in the registry by digest: %v", err)
	}
	tree, _ := flatten(t, img)
	files := byPath(tree)
	if _, ok := files["/app.txt"]; !ok {
		t.Errorf("/app.txt missing from the image built from the blob context: %v", tree)
	}
	if tags, _ := remote.List(app); len(tags) != 0 { // distribution answers NAME_UNKNOWN for a repository without tags
		t.Errorf("tags in %s: %v; --push-by-digest pushes no tag", app, tags)
	}

	// A blob the registry does not have: exit 1, saying which.
	missing := "blob://" + repo.Name() + "@sha256:" + strings.Repeat("ab", 32)
	r = runKiln(t, "build", "--context", missing, "--no-push", "--output", "oci:"+t.TempDir(), "--work-dir", t.TempDir())
	mustExit(t, r, 1)
	if !strings.Contains(r.stderr, "fetching the build context") {
		t.Errorf("want the failure named:\n%s", r)
	}
	r = runKiln(t, "build", "--context", "blob://"+repo.Name()+":latest", "--no-push", "--output", "oci:"+t.TempDir())
	mustExit(t, r, 2)
	r = runKiln(t, "build", "--context", ctxDir, "--push-by-digest", "--output", "oci:"+t.TempDir())
	mustExit(t, r, 2)
}

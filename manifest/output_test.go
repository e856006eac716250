package manifest

import (
	"context"
	"io"
	"log"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

func TestWriteImageIsReadableByOtherTools(t *testing.T) {
	dir := t.TempDir()
	l, err := OpenLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	img := randomImage(t)
	desc, err := l.WriteImage(context.Background(), img, "example.com/app:1")
	if err != nil {
		t.Fatal(err)
	}
	// Writing again under the same name replaces the entries, not appends.
	img2 := randomImage(t)
	if _, err := l.WriteImage(context.Background(), img2, "example.com/app:1"); err != nil {
		t.Fatal(err)
	}
	idx, err := l.ReadIndex()
	if err != nil || len(idx.Manifests) != 2 {
		t.Fatalf("index has %d entries, want 2: the name and its platform's (%v)", len(idx.Manifests), err)
	}
	if got := idx.Manifests[1].Annotations[AnnotationRefName]; got != "example.com/app:1-linux-amd64" || idx.Manifests[1].Digest != idx.Manifests[0].Digest {
		t.Errorf("second entry %s named %q, want the image again as example.com/app:1-linux-amd64", idx.Manifests[1].Digest, got)
	}
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.Image(idx.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(got); err != nil {
		t.Fatal(err)
	}
	if want, _ := img2.Digest(); idx.Manifests[0].Digest != want || desc.Digest == want {
		t.Errorf("entry digest %s, want %s", idx.Manifests[0].Digest, want)
	}
}

func TestWriteIndex(t *testing.T) {
	dir := t.TempDir()
	l, err := OpenLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: randomImage(t, "linux/amd64"), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: randomImage(t, "linux/arm64"), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
	)
	if _, err := l.WriteIndex(context.Background(), idx, "app"); err != nil {
		t.Fatal(err)
	}
	p, _ := layout.FromPath(dir)
	top, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, _ := top.IndexManifest()
	child, err := top.ImageIndex(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(child); err != nil {
		t.Fatal(err)
	}
}

func TestWriteTarball(t *testing.T) {
	path := filepath.Join(t.TempDir(), "img.tar")
	img := randomImage(t)
	tag, _ := name.NewTag("example.com/app:1")
	if err := WriteTarball(path, img, []name.Tag{tag}); err != nil {
		t.Fatal(err)
	}
	got, err := tarball.ImageFromPath(path, &tag)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(got); err != nil {
		t.Fatal(err)
	}
	if err := WriteTarball(filepath.Join(t.TempDir(), "untagged.tar"), img, nil); err != nil {
		t.Fatal(err)
	}
}

func TestPushToEveryDestination(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	c, err := NewClient()
	if err != nil {
		t.Fatal(err)
	}
	img := randomImage(t)
	var refs []name.Reference
	for _, s := range []string{"/a/app:1", "/a/app:latest", "/b/app:1"} {
		r, err := name.ParseReference(host + s)
		if err != nil {
			t.Fatal(err)
		}
		refs = append(refs, r)
	}
	h, err := c.Push(context.Background(), img, refs)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range refs {
		got, err := remote.Image(r)
		if err != nil {
			t.Fatalf("%s: %v", r, err)
		}
		if d, _ := got.Digest(); d != h {
			t.Errorf("%s has %s, want %s", r, d, h)
		}
	}
}

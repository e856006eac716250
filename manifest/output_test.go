package manifest

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

// cachedImage writes a random image into a layout of its own, as a warm
// cache holds it, and returns that layout and the image read back from it
// as a build reads a cached base: verified.
func cachedImage(t *testing.T, dir string) (*Layout, v1.Image) {
	t.Helper()
	cache, err := OpenLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := cache.WriteImage(context.Background(), randomImage(t), "example.com/base:1")
	if err != nil {
		t.Fatal(err)
	}
	img, err := cache.ImageByDigest(desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	vimg, err := VerifiedImage(img, "base")
	if err != nil {
		t.Fatal(err)
	}
	return cache, vimg
}

func layerDigests(t *testing.T, img v1.Image) []v1.Hash {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	var hs []v1.Hash
	for _, d := range m.Layers {
		hs = append(hs, d.Digest)
	}
	return hs
}

func sameFile(t *testing.T, a, b string) bool {
	t.Helper()
	fa, err := os.Stat(a)
	if err != nil {
		t.Fatal(err)
	}
	fb, err := os.Stat(b)
	if err != nil {
		t.Fatal(err)
	}
	return os.SameFile(fa, fb)
}

func TestWriteImageLinksCachedBlobs(t *testing.T) {
	root := t.TempDir()
	cache, img := cachedImage(t, filepath.Join(root, "cache"))
	out, err := OpenLayout(filepath.Join(root, "out"))
	if err != nil {
		t.Fatal(err)
	}
	desc, err := out.WriteImage(context.Background(), img, "app")
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range layerDigests(t, img) {
		if !sameFile(t, cache.BlobPath(h), out.BlobPath(h)) {
			t.Errorf("layer %s was copied, want a link to the cache's blob", h)
		}
	}
	p, _ := layout.FromPath(out.Dir())
	got, err := p.Image(desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(got); err != nil {
		t.Fatal(err)
	}
}

func TestWriteImageCopiesWhatItMayNotLink(t *testing.T) {
	root := t.TempDir()
	cache, img := cachedImage(t, filepath.Join(root, "cache"))
	h := layerDigests(t, img)[0]
	if err := os.Chmod(cache.BlobPath(h), 0o644); err != nil { // not a committed blob's mode
		t.Fatal(err)
	}
	out, err := OpenLayout(filepath.Join(root, "out"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := out.WriteImage(context.Background(), img, "app"); err != nil {
		t.Fatal(err)
	}
	if sameFile(t, cache.BlobPath(h), out.BlobPath(h)) {
		t.Errorf("a writable blob was linked, want a copy")
	}
	if !bytes.Equal(readBytes(t, cache.BlobPath(h)), readBytes(t, out.BlobPath(h))) {
		t.Errorf("the copy differs from the cache's blob")
	}
}

func TestWriteImageRefusesADamagedCachedBlob(t *testing.T) {
	for _, mode := range []os.FileMode{0o444, 0o644} { // linked, copied
		t.Run(mode.String(), func(t *testing.T) {
			root := t.TempDir()
			cache, img := cachedImage(t, filepath.Join(root, "cache"))
			h := layerDigests(t, img)[1]
			p := cache.BlobPath(h)
			data := readBytes(t, p)
			data[len(data)/2] ^= 0xff // same size, other bytes: bit rot
			if err := os.Chmod(p, 0o644); err != nil {
				t.Fatal(err)
			}
			writeFile(t, p, data)
			if err := os.Chmod(p, mode); err != nil {
				t.Fatal(err)
			}
			out, err := OpenLayout(filepath.Join(root, "out"))
			if err != nil {
				t.Fatal(err)
			}
			_, err = out.WriteImage(context.Background(), img, "app")
			if !errors.Is(err, ErrIntegrity) {
				t.Fatalf("writing an image with a damaged cached layer: %v, want ErrIntegrity", err)
			}
			if out.HasBlob(h, -1) {
				t.Errorf("the damaged layer is in the output")
			}
			assertNoTemps(t, out)
		})
	}
}

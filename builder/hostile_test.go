package builder

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// TestHostileBase builds on a base whose layer climbs out with "../" and
// whose symlinks point up and out: everything must land inside the image.
func TestHostileBase(t *testing.T) {
	base := fixtureImage(t, amd64, v1.Config{}, fixtureLayer(t,
		ffile("../../kiln-hostile-escape", "evil\n"),
		flink("up", "../../../../"),
		flink("etc", "/../../tmp"),
	))
	bases := fakeBases{"library/hostile:1@linux/amd64": base}
	work := t.TempDir()
	dir := writeContext(t, map[string]string{
		"Dockerfile": "FROM hostile:1\nCOPY a.txt /up/\nCOPY a.txt /etc/passwd\nWORKDIR /up/wd\n",
		"a.txt":      "a\n",
	})
	res, err := Build(context.Background(), Request{Context: dir, Platform: amd64, Reproducible: true},
		WithBaseImages(bases), WithWorkDir(work))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	// mutate.Extract refuses the base itself, so look at the layers kiln made.
	layers, err := res.Image.Layers()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, l := range layers[1:] {
		for _, name := range layerNames(t, l) {
			got[name] = true
		}
	}
	for _, p := range []string{"a.txt", "tmp/passwd", "wd/"} {
		if !got[p] {
			t.Errorf("no %s in the new layers: %v", p, got)
		}
	}
	for _, outside := range []string{filepath.Dir(work), filepath.Dir(filepath.Dir(work))} {
		if _, err := os.Lstat(filepath.Join(outside, "kiln-hostile-escape")); err == nil {
			t.Errorf("a layer wrote into %s", outside)
		}
		if _, err := os.Lstat(filepath.Join(outside, "a.txt")); err == nil {
			t.Errorf("a COPY wrote into %s", outside)
		}
	}
}

// layerNames lists the entry names of a layer.
func layerNames(t *testing.T, l v1.Layer) []string {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var names []string
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, hdr.Name)
	}
}

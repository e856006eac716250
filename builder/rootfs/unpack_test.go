package rootfs

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func image(t *testing.T, layers ...[]entry) v1.Image {
	t.Helper()
	var ls []v1.Layer
	for _, entries := range layers {
		data := layerTar(t, entries...)
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(data)), nil
		})
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
	}
	img, err := mutate.AppendLayers(empty.Image, ls...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestUnpack(t *testing.T) {
	r, _ := newRoot(t, false)
	img := image(t,
		[]entry{dir("etc"), file("etc/os-release", "ID=kiln"), file("etc/gone", "g"), {name: "dev/null", typ: '3', major: 1, minor: 3}},
		[]entry{whiteout("etc/.wh.gone"), file("etc/motd", "hi")},
	)
	stats, err := r.Unpack(context.Background(), img)
	if err != nil {
		t.Fatal(err)
	}
	assertTree(t, r.Dir(), "dev/", "etc/", "etc/motd", "etc/os-release")
	if stats.Files != 3 || stats.Whiteouts != 1 || stats.Entries != 6 {
		t.Errorf("stats %+v", stats)
	}
	if !hasWarning(stats, "layer 0: device /dev/null not created") {
		t.Errorf("warnings %q", stats.Warnings)
	}
	// The device was not made, so it has no owner to skip; /etc/gone was, before its whiteout.
	if _, ok := stats.SkippedOwners["/etc/motd"]; !ok || len(stats.SkippedOwners) != 4 {
		t.Errorf("SkippedOwners %v", stats.SkippedOwners)
	}
}

func TestUnpackNamesTheFailingLayer(t *testing.T) {
	r, _ := newRoot(t, false)
	img := image(t, []entry{file("a", "a")}, []entry{whiteout(".wh...")})
	_, err := r.Unpack(context.Background(), img)
	if err == nil || !strings.Contains(err.Error(), "unpacking layer 1 (sha256:") {
		t.Fatalf("err = %v", err)
	}
}

// TestUnpackLayer: one layer into an empty root is that layer's tree.
func TestUnpackLayer(t *testing.T) {
	r, _ := newRoot(t, false)
	layers, err := image(t, []entry{dir("etc"), file("etc/os-release", "ID=kiln"), whiteout("etc/.wh.gone")}).Layers()
	if err != nil {
		t.Fatal(err)
	}
	stats, err := r.UnpackLayer(context.Background(), layers[0])
	if err != nil {
		t.Fatal(err)
	}
	assertTree(t, r.Dir(), "etc/", "etc/os-release")
	if stats.Files != 1 || stats.Whiteouts != 1 {
		t.Errorf("stats %+v", stats)
	}
}

// unopenable is a layer whose stream cannot be opened.
type unopenable struct{ v1.Layer }

var errUnopenable = errors.New("blob missing")

func (unopenable) Uncompressed() (io.ReadCloser, error) { return nil, errUnopenable }

// TestUnpackReadsAhead: the next layer is opened while one is applied; its
// failure is reported as its own, once its turn comes.
func TestUnpackReadsAhead(t *testing.T) {
	r, _ := newRoot(t, false)
	layers, err := image(t, []entry{file("a", "a")}, []entry{file("b", "b")}, []entry{file("c", "c")}).Layers()
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layers[0], unopenable{layers[1]}, layers[2])
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Unpack(context.Background(), img)
	if !errors.Is(err, errUnopenable) || !strings.Contains(err.Error(), "unpacking layer 1 (sha256:") {
		t.Fatalf("err = %v", err)
	}
	assertTree(t, r.Dir(), "a")
}

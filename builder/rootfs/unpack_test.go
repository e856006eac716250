package rootfs

import (
	"bytes"
	"context"
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

package archcheck

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"kiln/platform"
)

func TestCheckImageLayers(t *testing.T) {
	t.Parallel()
	amd64, arm64 := bin(t, "amd64"), bin(t, "arm64")
	tests := []struct {
		name    string
		layers  [][]entry
		opts    Options
		checked int
		skipped int
		found   []string
	}{
		{
			name:   "no layers",
			layers: nil,
		},
		{
			name: "findings from every layer, in order",
			layers: [][]entry{
				{exe("usr/bin/a", amd64), exe("usr/bin/ok", arm64)},
				{file("usr/lib/libb.so", amd64)},
			},
			checked: 3,
			found:   []string{"/usr/bin/a", "/usr/lib/libb.so"},
		},
		{
			name: "Max applies per layer",
			opts: Options{Max: 1},
			layers: [][]entry{
				{exe("bin/a", amd64), exe("bin/b", amd64)},
				{exe("bin/c", amd64), exe("bin/d", amd64)},
			},
			checked: 2,
			skipped: 2,
			found:   []string{"/bin/a", "/bin/c"},
		},
		{
			name: "a later layer deletes the binary",
			layers: [][]entry{
				{exe("tmp/dl/app", amd64), exe("usr/bin/app", amd64)},
				{file("tmp/dl/.wh.app", nil)},
			},
			checked: 2,
			found:   []string{"/usr/bin/app"},
		},
		{
			name: "a later layer deletes the directory",
			layers: [][]entry{
				{exe("tmp/dl/x/app", amd64), exe("tmp/keep", amd64)},
				{file("tmp/.wh.dl", nil)},
			},
			checked: 2,
			found:   []string{"/tmp/keep"},
		},
		{
			name: "an opaque directory hides lower files, not its own",
			layers: [][]entry{
				{exe("opt/app/old", amd64), exe("opt/other", amd64)},
				{dir("opt/app/"), file("opt/app/.wh..wh..opq", nil), exe("opt/app/new", amd64)},
			},
			checked: 3,
			found:   []string{"/opt/other", "/opt/app/new"},
		},
		{
			name: "a later layer replaces the binary",
			layers: [][]entry{
				{exe("usr/bin/app", amd64), exe("usr/bin/tool", amd64)},
				{exe("usr/bin/app", arm64)},
			},
			checked: 3,
			found:   []string{"/usr/bin/tool"},
		},
		{
			name: "a later layer replaces a directory by a file",
			layers: [][]entry{
				{exe("opt/app/bin/app", amd64)},
				{symlink("opt/app", "/srv/app")},
			},
			checked: 1,
		},
		{
			name: "a deleted and re-added binary is still reported",
			layers: [][]entry{
				{exe("usr/bin/app", amd64)},
				{file("usr/bin/.wh.app", nil), exe("usr/bin/app", amd64)},
			},
			checked: 2,
			found:   []string{"/usr/bin/app"},
		},
		{
			name: "a hardlink in a later layer to a lower foreign binary",
			layers: [][]entry{
				{exe("usr/bin/app", amd64)},
				{hardlink("usr/local/bin/app", "usr/bin/app")},
			},
			checked: 1,
			found:   []string{"/usr/bin/app", "/usr/local/bin/app"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var layers []v1.Layer
			for _, entries := range tt.layers {
				layers = append(layers, layer(t, layerTar(t, entries...)))
			}
			rep, err := CheckImageLayers(context.Background(), layers, platform.MustParse("linux/arm64"), tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			var found []string
			for _, f := range rep.Findings {
				found = append(found, f.Path)
			}
			if fmt.Sprint(found) != fmt.Sprint(tt.found) {
				t.Errorf("findings %q, want %q", found, tt.found)
			}
			if rep.Checked != tt.checked || rep.Skipped != tt.skipped {
				t.Errorf("checked/skipped = %d/%d, want %d/%d", rep.Checked, rep.Skipped, tt.checked, tt.skipped)
			}
		})
	}
}

// failingLayer is a layer whose content cannot be read.
type failingLayer struct{ v1.Layer }

func (failingLayer) Uncompressed() (io.ReadCloser, error) { return nil, errBlobUnknown }

var errBlobUnknown = errors.New("blob unknown")

func TestCheckImageLayersErrors(t *testing.T) {
	t.Parallel()
	good := layer(t, layerTar(t, exe("bin/a", []byte("#!/bin/sh\n"))))
	broken := layer(t, layerTar(t, entry{name: "bin/b", typ: '0', mode: 0o755, body: []byte("\x7fELF"), size: 1 << 20}))
	_, err := CheckImageLayers(context.Background(), []v1.Layer{good, broken}, platform.MustParse("arm64"), Options{})
	if !errors.Is(err, io.ErrUnexpectedEOF) || !strings.Contains(err.Error(), "checking layer 1 (sha256:") {
		t.Errorf("err = %v, want an unexpected EOF naming layer 1 by digest", err)
	}
	_, err = CheckImageLayers(context.Background(), []v1.Layer{good, failingLayer{good}}, platform.MustParse("arm64"), Options{})
	if !errors.Is(err, errBlobUnknown) || !strings.Contains(err.Error(), "checking layer 1") {
		t.Errorf("err = %v, want blob unknown naming layer 1", err)
	}
}

package manifest

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// tarOf is a one-file tar followed by the end-of-archive blocks and the
// padding tar writers add: bytes a tar reader never reads.
func tarOf(t *testing.T, body string) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	if err := tw.WriteHeader(&tar.Header{Name: "f", Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte(body))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// swapped is a layer that claims one blob's digest and serves another's bytes.
type swapped struct {
	v1.Layer
	bytes []byte
}

func (s swapped) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(s.bytes)), nil
}

func imageOf(t *testing.T, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layers...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// readFirstEntry reads what a tar consumer reads (the first entry) and
// closes the stream, as unpack does.
func readFirstEntry(t *testing.T, l v1.Layer) error {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		return err
	}
	tr := tar.NewReader(rc)
	if _, err := tr.Next(); err != nil {
		rc.Close()
		return err
	}
	if _, err := io.Copy(io.Discard, tr); err != nil {
		rc.Close()
		return err
	}
	return rc.Close()
}

func TestVerifiedImageGoodLayers(t *testing.T) {
	img, err := random.Image(2048, 3)
	if err != nil {
		t.Fatal(err)
	}
	v, err := VerifiedImage(img, "random")
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := v.Layers()
	for i, l := range layers {
		if err := readFirstEntry(t, l); err != nil {
			t.Errorf("layer %d: %v", i, err)
		}
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			t.Errorf("layer %d compressed: %v", i, err)
		}
		rc.Close()
	}
	again, err := VerifiedImage(v, "again")
	if err != nil || again != v {
		t.Errorf("a verified image is verified again: %v", err)
	}
	if d1, _ := img.Digest(); true {
		if d2, _ := v.Digest(); d1 != d2 {
			t.Errorf("the verified image has digest %s, the image %s", d2, d1)
		}
	}
}

// The tampered bytes differ only in a file's content: a tar reader is
// happy, and only reading to the end (in Close) finds the mismatch, for a
// plain tar and a gzip blob alike.
func TestVerifiedImageTamperedLayer(t *testing.T) {
	good, bad := tarOf(t, "good"), tarOf(t, "EVIL")
	for _, mt := range []types.MediaType{types.OCIUncompressedLayer, types.OCILayer} {
		t.Run(string(mt), func(t *testing.T) {
			var orig v1.Layer = static.NewLayer(good, mt)
			evil := bad
			if mt == types.OCILayer {
				var err error
				if orig, err = partial.UncompressedToLayer(uncompressed{good}); err != nil {
					t.Fatal(err)
				}
				tampered, err := partial.UncompressedToLayer(uncompressed{bad})
				if err != nil {
					t.Fatal(err)
				}
				rc, _ := tampered.Compressed()
				evil, _ = io.ReadAll(rc)
			}
			v, err := VerifiedImage(imageOf(t, swapped{Layer: orig, bytes: evil}), "img")
			if err != nil {
				t.Fatal(err)
			}
			layers, _ := v.Layers()
			err = readFirstEntry(t, layers[0])
			if !errors.Is(err, ErrIntegrity) {
				t.Fatalf("reading a tampered layer: %v, want ErrIntegrity", err)
			}
			d, _ := orig.Digest()
			if !strings.Contains(err.Error(), d.String()) || !strings.Contains(err.Error(), "img: layer 0") {
				t.Errorf("the error should name the image, the layer and its digest: %v", err)
			}
		})
	}
}

type uncompressed struct{ b []byte }

func (u uncompressed) DiffID() (v1.Hash, error) {
	h, _, err := v1.SHA256(bytes.NewReader(u.b))
	return h, err
}
func (u uncompressed) Uncompressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(u.b)), nil
}
func (u uncompressed) MediaType() (types.MediaType, error) { return types.OCILayer, nil }

// A blob longer than its manifest says fails as soon as the extra byte is
// read; a shorter one at its end.
func TestVerifiedImageWrongSize(t *testing.T) {
	good := tarOf(t, "good")
	orig := static.NewLayer(good, types.OCIUncompressedLayer)
	for name, b := range map[string][]byte{"longer": append(bytes.Clone(good), 0), "shorter": good[:len(good)-512]} {
		t.Run(name, func(t *testing.T) {
			v, err := VerifiedImage(imageOf(t, swapped{Layer: orig, bytes: b}), "img")
			if err != nil {
				t.Fatal(err)
			}
			layers, _ := v.Layers()
			if err := readFirstEntry(t, layers[0]); !errors.Is(err, ErrSizeMismatch) {
				t.Errorf("got %v, want ErrSizeMismatch", err)
			}
		})
	}
}

// Manifests and configs with impossible values are refused before any
// layer is read.
func TestCheckManifest(t *testing.T) {
	l := static.NewLayer(tarOf(t, "x"), types.OCIUncompressedLayer)
	d, _ := l.Digest()
	base := v1.Manifest{
		SchemaVersion: 2, MediaType: types.OCIManifestSchema1,
		Config: v1.Descriptor{MediaType: types.OCIConfigJSON, Size: 2, Digest: d},
		Layers: []v1.Descriptor{{MediaType: types.OCIUncompressedLayer, Size: 3, Digest: d}},
	}
	tests := []struct {
		name string
		edit func(m *v1.Manifest)
		want string
	}{
		{"ok", func(*v1.Manifest) {}, ""},
		{"negative layer size", func(m *v1.Manifest) { m.Layers[0].Size = -1 }, "size -1"},
		{"negative config size", func(m *v1.Manifest) { m.Config.Size = -5 }, "size -5"},
		{"unknown layer type", func(m *v1.Manifest) { m.Layers[0].MediaType = "text/plain" }, `"text/plain"`},
		{"sha512 digest", func(m *v1.Manifest) { m.Layers[0].Digest.Algorithm = "sha512" }, "digest"},
		{"schema 1", func(m *v1.Manifest) { m.SchemaVersion = 1 }, "schemaVersion 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := base
			m.Layers = append([]v1.Descriptor(nil), base.Layers...)
			tc.edit(&m)
			err := CheckManifest(&m)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && (!errors.Is(err, ErrIntegrity) || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("got %v, want ErrIntegrity naming %s", err, tc.want)
			}
		})
	}
}

// diff_ids that do not match the layers, in count or value.
func TestVerifiedImageDiffIDs(t *testing.T) {
	l1 := static.NewLayer(tarOf(t, "one"), types.OCIUncompressedLayer)
	l2 := static.NewLayer(tarOf(t, "two"), types.OCIUncompressedLayer)
	img := imageOf(t, l1, l2)
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	short := cf.DeepCopy()
	short.RootFS.DiffIDs = short.RootFS.DiffIDs[:1]
	if _, err := VerifiedImage(withConfig{img, short}, "img"); !errors.Is(err, ErrIntegrity) || !strings.Contains(err.Error(), "1 diff_ids for 2 layers") {
		t.Errorf("one diff_id short: %v", err)
	}
	wrong := cf.DeepCopy()
	wrong.RootFS.DiffIDs[1] = wrong.RootFS.DiffIDs[0]
	v, err := VerifiedImage(withConfig{img, wrong}, "img")
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := v.Layers()
	if err := readFirstEntry(t, layers[0]); err != nil {
		t.Errorf("layer 0: %v", err)
	}
	if err := readFirstEntry(t, layers[1]); !errors.Is(err, ErrDigestMismatch) || !strings.Contains(err.Error(), "diff_id") {
		t.Errorf("layer 1 under layer 0's diff_id: %v", err)
	}
}

// withConfig is img with another config, its manifest pointing at it.
type withConfig struct {
	v1.Image
	cf *v1.ConfigFile
}

func (w withConfig) ConfigFile() (*v1.ConfigFile, error) { return w.cf, nil }
func (w withConfig) RawConfigFile() ([]byte, error)      { return partial.RawConfigFile(configOnly{w.cf}) }
func (w withConfig) Manifest() (*v1.Manifest, error) {
	m, err := w.Image.Manifest()
	if err != nil {
		return nil, err
	}
	m = m.DeepCopy()
	raw, err := w.RawConfigFile()
	if err != nil {
		return nil, err
	}
	h, n, err := v1.SHA256(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	m.Config.Digest, m.Config.Size = h, n
	return m, nil
}

type configOnly struct{ cf *v1.ConfigFile }

func (c configOnly) ConfigFile() (*v1.ConfigFile, error) { return c.cf, nil }

// A config blob that does not hash to the manifest's config digest.
func TestVerifiedImageConfigDigest(t *testing.T) {
	img := imageOf(t, static.NewLayer(tarOf(t, "one"), types.OCIUncompressedLayer))
	cf, _ := img.ConfigFile()
	other := cf.DeepCopy()
	other.Author = "someone else"
	if _, err := VerifiedImage(rawConfigSwap{img, other}, "img"); !errors.Is(err, ErrDigestMismatch) || !strings.Contains(err.Error(), "config") {
		t.Errorf("a swapped config: %v", err)
	}
}

// rawConfigSwap serves another config under the manifest's config digest.
type rawConfigSwap struct {
	v1.Image
	cf *v1.ConfigFile
}

func (r rawConfigSwap) RawConfigFile() ([]byte, error) {
	return partial.RawConfigFile(configOnly{r.cf})
}

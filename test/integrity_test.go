package test

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"kiln/test/harness"
)

// blobLayer is a layer given by its stored bytes, compressed or not, so a
// test can make two blobs of the same size and know both digests.
type blobLayer struct {
	blob   []byte
	tar    []byte
	mt     types.MediaType
	digest v1.Hash
	diffID v1.Hash
}

func newBlobLayer(t *testing.T, tarData []byte, gz bool) *blobLayer {
	t.Helper()
	l := &blobLayer{tar: tarData, blob: tarData, mt: types.OCIUncompressedLayer}
	if gz {
		// Stored blocks: a changed byte of content keeps the blob's size,
		// and the gzip stream stays valid (its CRC is recomputed), as an
		// attacker would make it.
		var b bytes.Buffer
		zw, err := gzip.NewWriterLevel(&b, gzip.NoCompression)
		if err != nil {
			t.Fatal(err)
		}
		zw.Write(tarData)
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		l.blob, l.mt = b.Bytes(), types.OCILayer
	}
	l.digest, l.diffID = sha256Hash(l.blob), sha256Hash(tarData)
	return l
}

func sha256Hash(b []byte) v1.Hash {
	s := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(s[:])}
}

func (l *blobLayer) Digest() (v1.Hash, error)            { return l.digest, nil }
func (l *blobLayer) DiffID() (v1.Hash, error)            { return l.diffID, nil }
func (l *blobLayer) Size() (int64, error)                { return int64(len(l.blob)), nil }
func (l *blobLayer) MediaType() (types.MediaType, error) { return l.mt, nil }
func (l *blobLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.blob)), nil
}
func (l *blobLayer) Uncompressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.tar)), nil
}

// tamperedPair is a base layer and a same-size replacement whose file
// /etc/motd says "EVIL" where the original says "good".
func tamperedPair(t *testing.T, gz bool) (orig, evil *blobLayer) {
	t.Helper()
	tarData := rawLayerTar(t, ldir("etc"), lfile("etc/motd", "good day\n"), lfile("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"))
	i := bytes.Index(tarData, []byte("good day\n"))
	if i < 0 {
		t.Fatal("no marker in the layer tar")
	}
	bad := bytes.Clone(tarData)
	copy(bad[i:], "EVIL")
	orig, evil = newBlobLayer(t, tarData, gz), newBlobLayer(t, bad, gz)
	if len(orig.blob) != len(evil.blob) {
		t.Fatalf("the tampered blob has %d bytes, the original %d", len(evil.blob), len(orig.blob))
	}
	return orig, evil
}

// replaceRegistryBlob overwrites a blob in the registry's storage, as
// someone with write access to its volume would.
func replaceRegistryBlob(t *testing.T, reg *harness.Registry, h v1.Hash, data []byte) {
	t.Helper()
	path := filepath.Join(reg.Dir, "data", "docker", "registry", "v2", "blobs", h.Algorithm, h.Hex[:2], h.Hex, "data")
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("registry blob %s: %v", h, err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// tagExists asks the registry whether ref has a manifest.
func tagExists(t *testing.T, ref string) bool {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	_, err = remote.Head(r, remote.WithContext(t.Context()))
	var te *transport.Error
	switch {
	case err == nil:
		return true
	case errors.As(err, &te) && te.StatusCode == http.StatusNotFound:
		return false
	}
	t.Fatalf("HEAD %s: %v", ref, err)
	return false
}

// TestBuildTamperedBase: a base layer replaced in the registry by a blob of
// the same size (plain tar and gzip) is never built on: FROM + COPY, and
// COPY --from of that stage, fail with exit 1 naming the image, the layer
// and both digests, and nothing is pushed.
func TestBuildTamperedBase(t *testing.T) {
	t.Parallel()
	reg := harness.NewRegistry(t)
	dockerfiles := map[string]string{
		"from":      "FROM %s\nCOPY a.txt /a.txt\n",
		"copy-from": "FROM %s AS base\nFROM scratch\nCOPY --from=base /etc/motd /motd\n",
	}
	for _, gz := range []bool{false, true} {
		orig, evil := tamperedPair(t, gz)
		kind := map[bool]string{false: "tar", true: "gzip"}[gz]
		ref := reg.Ref("tampered/" + kind + ":1")
		pushHandImage(t, ref, handImage(t, "linux/amd64", v1.Config{}, orig))
		replaceRegistryBlob(t, reg, orig.digest, evil.blob)
		for dname, df := range dockerfiles {
			t.Run(kind+"/"+dname, func(t *testing.T) {
				ctxDir := t.TempDir()
				writeContext(t, ctxDir, map[string]string{"Dockerfile": fmt.Sprintf(df, ref), "a.txt": "a\n"})
				dest := reg.Ref("out/" + kind + "-" + dname + ":1")
				r := runKiln(t, "build", "--context", ctxDir, "--destination", dest)
				mustExit(t, r, 1)
				t.Logf("refused: %s", lastLines(r.stderr, 1))
				for _, want := range []string{orig.digest.String(), evil.digest.String(), "layer 0", ref} {
					if !strings.Contains(r.stderr, want) {
						t.Errorf("the error should name %s:\n%s", want, r.stderr)
					}
				}
				if tagExists(t, dest) {
					t.Errorf("%s was pushed from a tampered base", dest)
				}
			})
		}
	}
}

// TestBuildTamperedCache: a blob of the warm cache replaced by one of the
// same size is not used by an offline build (exit 1, both digests named);
// `kiln warm --verify` reports it.
func TestBuildTamperedCache(t *testing.T) {
	t.Parallel()
	reg := harness.NewRegistry(t)
	orig, evil := tamperedPair(t, true)
	ref := reg.Ref("cached/base:1")
	pushHandImage(t, ref, handImage(t, "linux/amd64", v1.Config{}, orig))
	cache := filepath.Join(t.TempDir(), "cache")
	mustExit(t, runKiln(t, "warm", "--cache-dir", cache, "--platform", "linux/amd64", "--image", ref), 0)
	path := filepath.Join(cache, "blobs", "sha256", orig.digest.Hex)
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, evil.blob, 0o644); err != nil {
		t.Fatal(err)
	}
	ctxDir := t.TempDir()
	writeContext(t, ctxDir, map[string]string{"Dockerfile": "FROM " + ref + "\nCOPY a.txt /a.txt\n", "a.txt": "a\n"})
	out := filepath.Join(t.TempDir(), "oci")
	r := runKiln(t, "build", "--cache-dir", cache, "--offline", "--context", ctxDir, "--output", "oci:"+out)
	mustExit(t, r, 1)
	t.Logf("refused: %s", lastLines(r.stderr, 1))
	for _, want := range []string{orig.digest.String(), evil.digest.String()} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("the error should name %s:\n%s", want, r.stderr)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "index.json")); err == nil {
		t.Errorf("an OCI layout was written from a tampered cache")
	}
	v := runKiln(t, "warm", "--verify", "--cache-dir", cache)
	mustExit(t, v, 1)
	if !strings.Contains(v.stdout+v.stderr, orig.digest.Hex[:12]) {
		t.Errorf("verify should name the damaged blob:\n%s", v)
	}
}

// TestBuildBadDescriptors: a base whose config lists one diff_id too few,
// one whose diff_id is wrong, and one whose manifest gives a layer size of
// -1 are refused before anything is unpacked, exit 1.
func TestBuildBadDescriptors(t *testing.T) {
	t.Parallel()
	reg := harness.NewRegistry(t)
	l1 := newBlobLayer(t, rawLayerTar(t, ldir("etc"), lfile("etc/one", "1\n")), true)
	l2 := newBlobLayer(t, rawLayerTar(t, lfile("etc/two", "2\n")), true)
	good := handImage(t, "linux/amd64", v1.Config{}, l1, l2)
	cf, err := good.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	m, err := good.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	short := cf.DeepCopy()
	short.RootFS.DiffIDs = short.RootFS.DiffIDs[:1]
	wrong := cf.DeepCopy()
	wrong.RootFS.DiffIDs[1] = l1.diffID
	cases := []struct {
		name string
		push func(ref string)
		want string
	}{
		{"diff_ids one short", func(ref string) { pushRawImage(t, ref, m, short) }, "1 diff_ids for 2 layers"},
		{"diff_id of another layer", func(ref string) { pushRawImage(t, ref, m, wrong) }, "diff_id " + l1.diffID.String()},
		{"layer size -1", func(ref string) {
			bad := m.DeepCopy()
			bad.Layers[1].Size = -1
			pushRawImage(t, ref, bad, cf)
		}, "size -1"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ref := reg.Ref(fmt.Sprintf("bad/desc%d:1", i))
			pushBlobs(t, ref, l1, l2)
			tc.push(ref)
			ctxDir := t.TempDir()
			writeContext(t, ctxDir, map[string]string{"Dockerfile": "FROM " + ref + "\nCOPY a.txt /etc/a.txt\n", "a.txt": "a\n"})
			out := filepath.Join(t.TempDir(), "oci")
			r := runKiln(t, "build", "--context", ctxDir, "--output", "oci:"+out)
			mustExit(t, r, 1)
			t.Logf("refused: %s", lastLines(r.stderr, 1))
			if !strings.Contains(r.stderr, tc.want) {
				t.Errorf("want %q in the error:\n%s", tc.want, r.stderr)
			}
		})
	}
}

// pushBlobs uploads layers' blobs to ref's repository.
func pushBlobs(t *testing.T, ref string, layers ...v1.Layer) {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		if err := remote.WriteLayer(r.Context(), l, remote.WithContext(t.Context())); err != nil {
			t.Fatal(err)
		}
	}
}

// pushRawImage pushes cfg as the config blob and m (its config descriptor
// fixed up to cfg) as ref's manifest, whatever they say.
func pushRawImage(t *testing.T, ref string, m *v1.Manifest, cfg *v1.ConfigFile) {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.ConfigFile(handImage(t, "linux/amd64", v1.Config{}), cfg)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cl := newBlobLayer(t, raw, false)
	if err := remote.WriteLayer(r.Context(), cl, remote.WithContext(t.Context())); err != nil {
		t.Fatal(err)
	}
	m = m.DeepCopy()
	m.Config.Digest, m.Config.Size = cl.digest, int64(len(raw))
	body, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Put(r, rawManifest{body: body, mt: m.MediaType}, remote.WithContext(t.Context())); err != nil {
		t.Fatal(err)
	}
}

type rawManifest struct {
	body []byte
	mt   types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.body, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mt, nil }

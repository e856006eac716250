package manifest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	specs "github.com/opencontainers/image-spec/specs-go/v1"

	"kiln/platform"
)

// storeImage writes img's config, layers and manifest into l the way a
// warmer does (WriteBlob for layers, PutBlob for small blobs) and returns the
// manifest's descriptor for platform p (nil: none).
func storeImage(t *testing.T, l *Layout, img v1.Image, p *v1.Platform) v1.Descriptor {
	t.Helper()
	ctx := context.Background()
	cfg, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	put(t, l, cfg)
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, layer := range layers {
		d, err := layer.Digest()
		if err != nil {
			t.Fatal(err)
		}
		size, err := layer.Size()
		if err != nil {
			t.Fatal(err)
		}
		rc, err := layer.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		_, err = l.WriteBlob(ctx, d, size, rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	mt, err := img.MediaType()
	if err != nil {
		t.Fatal(err)
	}
	return v1.Descriptor{MediaType: mt, Digest: put(t, l, raw), Size: int64(len(raw)), Platform: p}
}

// randomImage is a small image for linux/amd64 unless a platform is given;
// its config names the platform, as validate.Index requires.
func randomImage(t *testing.T, plat ...string) v1.Image {
	t.Helper()
	img, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	p := platform.MustParse("linux/amd64")
	if len(plat) > 0 {
		p = platform.MustParse(plat[0])
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture, cfg.Variant = p.OS, p.Architecture, p.Variant
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// fileRef records ref in index.json as kiln does: an index blob of descs,
// annotated with the reference and the digest it came from.
func fileRef(t *testing.T, l *Layout, ref string, src v1.Hash, checked time.Time, descs ...v1.Descriptor) v1.Descriptor {
	t.Helper()
	data, err := json.Marshal(NewIndex(descs))
	if err != nil {
		t.Fatal(err)
	}
	entry := v1.Descriptor{
		MediaType: types.OCIImageIndex, Digest: put(t, l, data), Size: int64(len(data)),
		Annotations: map[string]string{
			AnnotationRefName:      ref,
			AnnotationSourceDigest: src.String(),
			AnnotationChecked:      checked.UTC().Format(time.RFC3339Nano),
		},
	}
	addEntry(t, l, entry)
	return entry
}

func addEntry(t *testing.T, l *Layout, d v1.Descriptor) {
	t.Helper()
	err := l.UpdateIndex(context.Background(), func(idx *v1.IndexManifest) (bool, error) {
		idx.Manifests = append(idx.Manifests, d)
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestLayoutInteroperability: what kiln writes, go-containerregistry's
// layout package (and so crane, and tools that follow the OCI spec) reads.
func TestLayoutInteroperability(t *testing.T) {
	l := openTestLayout(t)
	img := randomImage(t)
	want, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	desc := storeImage(t, l, img, &v1.Platform{OS: "linux", Architecture: "amd64"})
	entry := fileRef(t, l, "example.com/interop:1", desc.Digest, time.Now(), desc)
	// A plain entry too, as `crane pull --format=oci` would write it.
	addEntry(t, l, v1.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size,
		Annotations: map[string]string{AnnotationRefName: "example.com/interop:plain"}})

	p, err := layout.FromPath(l.Dir())
	if err != nil {
		t.Fatal(err)
	}
	ii, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	nested, err := ii.ImageIndex(entry.Digest)
	if err != nil {
		t.Fatalf("kiln's index of the reference: %v", err)
	}
	viaIndex, err := nested.Image(desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := p.Image(desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	for name, got := range map[string]v1.Image{"via kiln's index": viaIndex, "plain entry": plain} {
		if d, err := got.Digest(); err != nil || d != want {
			t.Errorf("%s: digest %v, %v; want %v", name, d, err, want)
		}
		if err := validate.Image(got); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := validate.Index(nested); err != nil {
		t.Errorf("kiln's index: %v", err)
	}
}

func TestCacheKey(t *testing.T) {
	const dgst = "sha256:0000000000000000000000000000000000000000000000000000000000000001"
	tests := []struct {
		ref  string
		want string
	}{
		{"busybox:1.36", "index.docker.io/library/busybox:1.36"},
		{"busybox", "index.docker.io/library/busybox:latest"},
		{"docker.io/library/busybox:1.36", "index.docker.io/library/busybox:1.36"},
		{"index.docker.io/library/busybox:1.36", "index.docker.io/library/busybox:1.36"},
		{"acme/tool:2", "index.docker.io/acme/tool:2"},
		{"ghcr.io/acme/tool:v2", "ghcr.io/acme/tool:v2"},
		{"localhost:5000/x:y", "localhost:5000/x:y"},
		{"busybox@" + dgst, "index.docker.io/library/busybox@" + dgst},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			if got := CacheKey(mustParseRef(t, tt.ref)); got != tt.want {
				t.Errorf("CacheKey(%q) = %q, want %q", tt.ref, got, tt.want)
			}
		})
	}
}

func mustParseRef(t *testing.T, s string) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

func TestEntriesSortedAndParsed(t *testing.T) {
	l := openTestLayout(t)
	checked := time.Date(2025, 3, 1, 12, 30, 0, 123456789, time.UTC)
	src := sha256Of([]byte("source"))
	for _, ref := range []string{"index.docker.io/library/zeta:1", "ghcr.io/b/c:1", "index.docker.io/library/alpha:1"} {
		fileRef(t, l, ref, src, checked)
	}
	// An entry another tool wrote: no kiln annotations.
	addEntry(t, l, v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: sha256Of([]byte("x")), Size: 1})

	entries, err := l.Entries()
	if err != nil {
		t.Fatal(err)
	}
	var refs []string
	for _, e := range entries {
		refs = append(refs, e.Ref)
	}
	want := []string{"", "ghcr.io/b/c:1", "index.docker.io/library/alpha:1", "index.docker.io/library/zeta:1"}
	if fmt.Sprint(refs) != fmt.Sprint(want) {
		t.Fatalf("refs = %q, want %q", refs, want)
	}
	if e := entries[0]; e.SourceDigest != (v1.Hash{}) || !e.Checked.IsZero() {
		t.Errorf("entry without annotations parsed as %+v", e)
	}
	for _, e := range entries[1:] {
		if e.SourceDigest != src || !e.Checked.Equal(checked) {
			t.Errorf("%s: source %v checked %v; want %v %v", e.Ref, e.SourceDigest, e.Checked, src, checked)
		}
	}
}

func TestLookup(t *testing.T) {
	l := openTestLayout(t)
	srcBusybox := sha256Of([]byte("busybox index"))
	srcTool := sha256Of([]byte("tool index"))
	pinned := sha256Of([]byte("alpine index"))
	busybox := fileRef(t, l, "index.docker.io/library/busybox:1.36", srcBusybox, time.Now())
	tool := fileRef(t, l, "ghcr.io/acme/tool:v2", srcTool, time.Now())
	alpine := fileRef(t, l, "index.docker.io/library/alpine@"+pinned.String(), pinned, time.Now())

	tests := []struct {
		name string
		ref  string
		want *v1.Descriptor // nil: not found
	}{
		{name: "tag as written", ref: "busybox:1.36", want: &busybox},
		{name: "tag canonical", ref: "index.docker.io/library/busybox:1.36", want: &busybox},
		{name: "tag docker.io", ref: "docker.io/library/busybox:1.36", want: &busybox},
		{name: "other tag", ref: "busybox:1.37"},
		{name: "digest of a tag's source", ref: "busybox@" + srcBusybox.String(), want: &busybox},
		{name: "source digest in another repo", ref: "alpine@" + srcBusybox.String()},
		{name: "source digest on another registry", ref: "ghcr.io/library/busybox@" + srcBusybox.String()},
		{name: "other registry", ref: "ghcr.io/acme/tool@" + srcTool.String(), want: &tool},
		{name: "filed by digest", ref: "alpine@" + pinned.String(), want: &alpine},
		{name: "unknown digest", ref: "busybox@" + sha256Of([]byte("nope")).String()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, ok, err := l.Lookup(mustParseRef(t, tt.ref))
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tt.want == nil && ok:
				t.Errorf("found %s, want nothing", e.Ref)
			case tt.want != nil && !ok:
				t.Errorf("not found, want %s", tt.want.Annotations[AnnotationRefName])
			case tt.want != nil && e.Desc.Digest != tt.want.Digest:
				t.Errorf("found %s, want %s", e.Ref, tt.want.Annotations[AnnotationRefName])
			}
		})
	}
}

func TestImage(t *testing.T) {
	l := openTestLayout(t)
	amd64 := storeImage(t, l, randomImage(t), &v1.Platform{OS: "linux", Architecture: "amd64"})
	// Docker Hub files arm64 images with the default variant spelled out.
	arm64 := storeImage(t, l, randomImage(t, "linux/arm64"), &v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"})
	fileRef(t, l, "index.docker.io/library/multi:1", sha256Of([]byte("src")), time.Now(), arm64, amd64)

	tests := []struct {
		name     string
		ref      string
		platform specs.Platform
		want     v1.Hash
		wantErr  error
	}{
		{name: "amd64", ref: "multi:1", platform: platform.MustParse("linux/amd64"), want: amd64.Digest},
		{name: "arm64/v8 as written", ref: "multi:1", platform: specs.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, want: arm64.Digest},
		{name: "arm64/v8 parsed", ref: "multi:1", platform: platform.MustParse("linux/arm64/v8"), want: arm64.Digest},
		{name: "arm64", ref: "docker.io/library/multi:1", platform: platform.MustParse("arm64"), want: arm64.Digest},
		{name: "platform not cached", ref: "multi:1", platform: platform.MustParse("linux/s390x"), wantErr: ErrNotCached},
		{name: "ref not cached", ref: "multi:2", platform: platform.MustParse("linux/amd64"), wantErr: ErrNotCached},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img, desc, err := l.Image(mustParseRef(t, tt.ref), tt.platform)
			checkErr(t, err, tt.wantErr)
			if tt.wantErr != nil {
				return
			}
			if desc.Digest != tt.want {
				t.Errorf("descriptor %s, want %s", desc.Digest, tt.want)
			}
			if d, err := img.Digest(); err != nil || d != tt.want {
				t.Errorf("image digest %v, %v; want %s", d, err, tt.want)
			}
			if err := validate.Image(img); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestImageDamagedIndexBlob(t *testing.T) {
	l := openTestLayout(t)
	desc := storeImage(t, l, randomImage(t), &v1.Platform{OS: "linux", Architecture: "amd64"})
	entry := fileRef(t, l, "example.com/damaged:1", desc.Digest, time.Now(), desc)
	writeFile(t, l.BlobPath(entry.Digest), []byte(`{"schemaVersion":2,"manifests":[]}`))
	if _, _, err := l.Image(mustParseRef(t, "example.com/damaged:1"), platform.MustParse("linux/amd64")); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("err = %v, want ErrDigestMismatch", err)
	}
}

func TestNewIndexDeterministic(t *testing.T) {
	desc := func(s string) v1.Descriptor {
		var p *v1.Platform
		if s != "" {
			p = platform.ToV1(platform.MustParse(s))
		}
		return v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: sha256Of([]byte(s)), Size: int64(len(s)), Platform: p}
	}
	a, b, c, d := desc("linux/arm64"), desc("linux/amd64"), desc("linux/arm/v7"), desc("linux/s390x")
	orders := [][]v1.Descriptor{{a, b, c, d}, {d, c, b, a}, {b, d, a, c}, {c, a, d, b}}
	var first []byte
	for i, in := range orders {
		inCopy := append([]v1.Descriptor(nil), in...)
		idx := NewIndex(in)
		if fmt.Sprint(in) != fmt.Sprint(inCopy) {
			t.Errorf("order %d: NewIndex reordered its argument", i)
		}
		if idx.SchemaVersion != 2 || idx.MediaType != types.OCIImageIndex {
			t.Errorf("index header %d %s", idx.SchemaVersion, idx.MediaType)
		}
		var got []string
		for _, m := range idx.Manifests {
			got = append(got, platform.Format(platform.FromV1(m.Platform)))
		}
		if want := "[linux/amd64 linux/arm/v7 linux/arm64 linux/s390x]"; fmt.Sprint(got) != want {
			t.Errorf("order %d: platforms %v, want %s", i, got, want)
		}
		data, err := json.Marshal(idx)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = data
		} else if !bytes.Equal(data, first) {
			t.Errorf("order %d gives different bytes:\n%s\nvs\n%s", i, data, first)
		}
	}
	// A null manifests list is not a valid OCI index.
	if data := mustJSON(t, NewIndex(nil)); bytes.Contains(data, []byte(`"manifests":null`)) {
		t.Errorf("NewIndex(nil) marshals as %s", data)
	}
}

func TestChildren(t *testing.T) {
	cfg := v1.Descriptor{MediaType: types.OCIConfigJSON, Digest: sha256Of([]byte("config")), Size: 6}
	l1 := v1.Descriptor{MediaType: types.OCILayer, Digest: sha256Of([]byte("l1")), Size: 2}
	l2 := v1.Descriptor{MediaType: types.OCILayer, Digest: sha256Of([]byte("l2")), Size: 2}
	m1 := v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: sha256Of([]byte("m1")), Size: 2, Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}
	m2 := v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: sha256Of([]byte("m2")), Size: 2, Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}
	manifest := mustJSON(t, v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1, Config: cfg, Layers: []v1.Descriptor{l1, l2}})
	index := mustJSON(t, v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{m1, m2}})
	tests := []struct {
		name    string
		mt      types.MediaType
		data    []byte
		want    []v1.Descriptor
		wantErr bool
	}{
		{name: "OCI index", mt: types.OCIImageIndex, data: index, want: []v1.Descriptor{m1, m2}},
		{name: "Docker manifest list", mt: types.DockerManifestList, data: index, want: []v1.Descriptor{m1, m2}},
		{name: "OCI manifest", mt: types.OCIManifestSchema1, data: manifest, want: []v1.Descriptor{cfg, l1, l2}},
		{name: "Docker manifest", mt: types.DockerManifestSchema2, data: manifest, want: []v1.Descriptor{cfg, l1, l2}},
		{name: "layer", mt: types.OCILayer, data: []byte("\x1f\x8b binary"), want: nil},
		{name: "config", mt: types.OCIConfigJSON, data: []byte(`{}`), want: nil},
		{name: "unknown", mt: "application/vnd.example+json", data: index, want: nil},
		{name: "broken index", mt: types.OCIImageIndex, data: []byte(`{"manifests":`), wantErr: true},
		{name: "broken manifest", mt: types.OCIManifestSchema1, data: []byte(`[]`), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Children(tt.mt, tt.data)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("Children = %v, want %v", got, tt.want)
			}
		})
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

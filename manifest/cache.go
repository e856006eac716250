package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
	specs "github.com/opencontainers/image-spec/specs-go/v1"

	"kiln/platform"
)

// Annotations on index.json entries of the warm cache. The reference name is
// the OCI standard one, so skopeo ("oci:DIR:REF"), umoci and crane find
// cached images by name; the io.kiln ones are kiln's bookkeeping.
const (
	AnnotationRefName = "org.opencontainers.image.ref.name"
	// AnnotationSourceDigest is the digest the reference resolved to in the
	// registry when it was pulled (an index or a single manifest).
	AnnotationSourceDigest = "io.kiln.cache.source-digest"
	// AnnotationChecked is when the registry last confirmed that digest (RFC 3339).
	AnnotationChecked = "io.kiln.cache.checked"
	// AnnotationLayerCacheKey marks an entry of the layer cache
	// (builder/layercache) and holds its key; AnnotationLayerCacheCreated
	// is when it was stored (RFC 3339). kiln warm --prune drops such
	// entries once they are older than the layer cache's TTL.
	AnnotationLayerCacheKey     = "io.kiln.layercache.key"
	AnnotationLayerCacheCreated = "io.kiln.layercache.created"
)

// ErrNotCached is returned when the cache has no entry for an image/platform.
var ErrNotCached = errors.New("not in the cache")

// CacheKey is the name an image is filed under in the cache: the reference
// made canonical ("busybox:1.36" → "index.docker.io/library/busybox:1.36").
func CacheKey(ref name.Reference) string { return ref.Name() }

// Entry is one cached reference: index.json's descriptor of the index kiln
// made for it, holding one manifest per cached platform.
type Entry struct {
	Desc         v1.Descriptor
	Ref          string
	SourceDigest v1.Hash
	Checked      time.Time
}

// Entries lists the cache's entries, sorted by reference.
func (l *Layout) Entries() ([]Entry, error) {
	idx, err := l.ReadIndex()
	if err != nil {
		return nil, err
	}
	out := make([]Entry, 0, len(idx.Manifests))
	for _, d := range idx.Manifests {
		out = append(out, entryOf(d))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Ref < out[j].Ref })
	return out, nil
}

func entryOf(d v1.Descriptor) Entry {
	e := Entry{Desc: d, Ref: d.Annotations[AnnotationRefName]}
	if h, err := v1.NewHash(d.Annotations[AnnotationSourceDigest]); err == nil {
		e.SourceDigest = h
	}
	if t, err := time.Parse(time.RFC3339Nano, d.Annotations[AnnotationChecked]); err == nil {
		e.Checked = t
	}
	return e
}

// Lookup finds the entry for ref. A digest reference also matches an entry
// filed under a tag whose source digest it is.
func (l *Layout) Lookup(ref name.Reference) (Entry, bool, error) {
	entries, err := l.Entries()
	if err != nil {
		return Entry{}, false, err
	}
	key := CacheKey(ref)
	for _, e := range entries {
		if e.Ref == key {
			return e, true, nil
		}
	}
	if d, ok := ref.(name.Digest); ok {
		for _, e := range entries {
			if e.SourceDigest.String() == d.DigestStr() && sameRepo(e.Ref, ref) {
				return e, true, nil
			}
		}
	}
	return Entry{}, false, nil
}

func sameRepo(entryRef string, ref name.Reference) bool {
	r, err := name.ParseReference(entryRef)
	return err == nil && r.Context().Name() == ref.Context().Name()
}

// ReadIndexBlob reads and parses an index stored as a blob.
func (l *Layout) ReadIndexBlob(h v1.Hash) (*v1.IndexManifest, error) {
	data, err := l.ReadBlob(h)
	if err != nil {
		return nil, err
	}
	var idx v1.IndexManifest
	if err := json.Unmarshal(data, &idx); err != nil {
		return nil, fmt.Errorf("index %s: %w", h, err)
	}
	return &idx, nil
}

// Image returns the cached image of ref for platform p, reading layers from
// the cache lazily. Callers hold the shared lock while they use it.
func (l *Layout) Image(ref name.Reference, p specs.Platform) (v1.Image, v1.Descriptor, error) {
	e, ok, err := l.Lookup(ref)
	if err != nil {
		return nil, v1.Descriptor{}, err
	}
	if !ok {
		return nil, v1.Descriptor{}, fmt.Errorf("%s: %w", ref, ErrNotCached)
	}
	idx, err := l.ReadIndexBlob(e.Desc.Digest)
	if err != nil {
		return nil, v1.Descriptor{}, err
	}
	desc, err := platform.Select(p, idx.Manifests)
	if err != nil {
		return nil, v1.Descriptor{}, fmt.Errorf("%s for %s: %w", ref, platform.Format(p), ErrNotCached)
	}
	img, err := l.imageUnder(e.Desc.Digest, desc.Digest)
	if err != nil {
		return nil, v1.Descriptor{}, fmt.Errorf("%s for %s: %w", ref, platform.Format(p), err)
	}
	return img, desc, nil
}

// NewIndex returns an OCI image index of the descriptors, sorted by platform
// so the same set always gives the same digest.
func NewIndex(descs []v1.Descriptor) *v1.IndexManifest {
	sorted := append([]v1.Descriptor{}, descs...) // never null: "manifests" is a required array
	sort.SliceStable(sorted, func(i, j int) bool {
		pi, pj := platform.Format(platform.FromV1(sorted[i].Platform)), platform.Format(platform.FromV1(sorted[j].Platform))
		if pi != pj {
			return pi < pj
		}
		return sorted[i].Digest.String() < sorted[j].Digest.String()
	})
	return &v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: sorted}
}

// Children lists the blobs a manifest or index blob refers to. Unknown media
// types have none.
func Children(mt types.MediaType, data []byte) ([]v1.Descriptor, error) {
	switch {
	case mt.IsIndex():
		idx, err := v1.ParseIndexManifest(bytesReader(data))
		if err != nil {
			return nil, err
		}
		return idx.Manifests, nil
	case mt.IsImage():
		m, err := v1.ParseManifest(bytesReader(data))
		if err != nil {
			return nil, err
		}
		return append([]v1.Descriptor{m.Config}, m.Layers...), nil
	}
	return nil, nil
}

// imageUnder opens image h that index idx (an entry of index.json) lists.
func (l *Layout) imageUnder(idx, h v1.Hash) (v1.Image, error) {
	top, err := layout.Path(l.dir).ImageIndex()
	if err != nil {
		return nil, err
	}
	child, err := top.ImageIndex(idx)
	if err != nil {
		return nil, err
	}
	return child.Image(h)
}

// ImageByDigest opens the image whose manifest is blob h, wherever it is
// filed (at the top of index.json or under an entry's index), reading its
// layers lazily. Callers hold the shared lock while they use it.
func (l *Layout) ImageByDigest(h v1.Hash) (v1.Image, error) {
	raw, err := l.ReadBlob(h)
	if err != nil {
		return nil, err
	}
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", h, err)
	}
	mt := m.MediaType
	if mt == "" {
		mt = types.OCIManifestSchema1
	}
	return partial.CompressedToImage(&blobImage{l: l, raw: raw, m: m, mt: mt})
}

// blobImage is an image read from the layout's blobs by digest.
type blobImage struct {
	l   *Layout
	raw []byte
	m   *v1.Manifest
	mt  types.MediaType
}

func (b *blobImage) RawManifest() ([]byte, error)        { return b.raw, nil }
func (b *blobImage) MediaType() (types.MediaType, error) { return b.mt, nil }
func (b *blobImage) RawConfigFile() ([]byte, error)      { return b.l.ReadBlob(b.m.Config.Digest) }

func (b *blobImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	for _, d := range b.m.Layers {
		if d.Digest == h {
			return &blobLayer{l: b.l, desc: d}, nil
		}
	}
	return nil, fmt.Errorf("layer %s is not in manifest", h)
}

// blobLayer is a layer blob of the layout.
type blobLayer struct {
	l    *Layout
	desc v1.Descriptor
}

func (b *blobLayer) Digest() (v1.Hash, error)            { return b.desc.Digest, nil }
func (b *blobLayer) Size() (int64, error)                { return b.desc.Size, nil }
func (b *blobLayer) MediaType() (types.MediaType, error) { return b.desc.MediaType, nil }
func (b *blobLayer) Compressed() (io.ReadCloser, error)  { return b.l.OpenBlob(b.desc.Digest) }

package manifest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	specs "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"

	"kiln/platform"
)

// Errors of BuildIndex, for errors.Is.
var (
	// ErrPlatformMismatch: an image's config names another platform than
	// the one it was asked to stand for.
	ErrPlatformMismatch = errors.New("platform mismatch")
	// ErrDuplicatePlatform: two images of one index are the same platform.
	ErrDuplicatePlatform = errors.New("duplicate platform in index")
	// ErrIndexFormat: a child or an annotation the index format cannot hold
	// (an OCI manifest or any annotation in a Docker manifest list).
	ErrIndexFormat = errors.New("not allowed in this index format")
)

// IndexFormat is the kind of index BuildIndex makes.
type IndexFormat string

const (
	// FormatOCI is an OCI image index. It may hold OCI and Docker schema 2
	// image manifests side by side, and annotations at both levels.
	FormatOCI IndexFormat = "oci"
	// FormatDocker is a Docker manifest list (schema 2), for registries and
	// tools that predate OCI. It holds Docker schema 2 manifests only, and
	// no annotations: the format has no field for them.
	FormatDocker IndexFormat = "docker"
)

// ParseIndexFormat reads "oci" or "docker".
func ParseIndexFormat(s string) (IndexFormat, error) {
	switch f := IndexFormat(s); f {
	case FormatOCI, FormatDocker:
		return f, nil
	}
	return "", fmt.Errorf("index format %q: want oci or docker", s)
}

func (f IndexFormat) mediaType() (types.MediaType, error) {
	switch f {
	case FormatOCI, "":
		return types.OCIImageIndex, nil
	case FormatDocker:
		return types.DockerManifestList, nil
	}
	return "", fmt.Errorf("index format %q: want oci or docker", string(f))
}

// IndexEntry is one image to put in an index.
type IndexEntry struct {
	// Image is the child. A remote image (remote.Image, or
	// Client.IndexEntries) is fine and stays lazy: BuildIndex reads only its
	// manifest and config; layers move when the index is pushed, mounted
	// from the source repository where the registry allows.
	Image v1.Image
	// Platform, if set, is the platform the image was asked to be. The
	// descriptor's platform always comes from the image's config; a config
	// that disagrees is ErrPlatformMismatch.
	Platform *specs.Platform
	// Annotations go on the child's descriptor in the index.
	Annotations map[string]string
	// Source names where the image came from, for messages (a reference, a
	// build step). It is not written into the index.
	Source string
}

// BuildIndex stitches images into one index of the given format, with
// annotations on the index itself.
//
// Each child's descriptor carries the platform of the image's config (os,
// architecture, variant, os.version, os.features) as the config spells it,
// checked against the entry's Platform after normalisation (arm64 ≡
// arm64/v8, arm ≡ arm/v7; arm/v6 is not arm/v7). Children are sorted by
// normalised platform, then os.version, then digest, so the same images give
// the same index digest whatever order they come in. Two children of one
// platform are ErrDuplicatePlatform.
//
// FormatDocker wants every child to be a Docker schema 2 manifest and no
// annotations (ErrIndexFormat): kiln does not convert OCI images, which would
// change their digests; build them with Docker media types or use FormatOCI,
// which takes both kinds.
func BuildIndex(entries []IndexEntry, format IndexFormat, annotations map[string]string) (v1.ImageIndex, error) {
	mt, err := format.mediaType()
	if err != nil {
		return nil, err
	}
	if len(entries) == 0 {
		return nil, errors.New("an index needs at least one image")
	}
	if err := checkAnnotations("index", annotations, format); err != nil {
		return nil, err
	}
	children := make([]indexChild, len(entries))
	for i, e := range entries {
		if e.Source == "" {
			e.Source = fmt.Sprintf("image %d", i+1)
		}
		if children[i], err = describeChild(e, format); err != nil {
			return nil, err
		}
	}
	slices.SortFunc(children, func(a, b indexChild) int {
		if c := strings.Compare(a.key, b.key); c != 0 {
			return c
		}
		return strings.Compare(a.desc.Digest.String(), b.desc.Digest.String())
	})
	for i := 1; i < len(children); i++ {
		if a, b := children[i-1], children[i]; a.key == b.key {
			return nil, fmt.Errorf("%w: %s and %s are both %s", ErrDuplicatePlatform, a.source, b.source, platformLabel(a.desc.Platform))
		}
	}
	return newBuiltIndex(mt, children, annotations)
}

// indexChild is an entry described for the index.
type indexChild struct {
	desc   v1.Descriptor
	img    v1.Image
	key    string // normalised platform: the sort order and what must be unique
	source string
}

func describeChild(e IndexEntry, format IndexFormat) (indexChild, error) {
	if e.Image == nil {
		return indexChild{}, fmt.Errorf("%s: no image", e.Source)
	}
	if err := checkAnnotations(e.Source, e.Annotations, format); err != nil {
		return indexChild{}, err
	}
	mt, err := e.Image.MediaType()
	if err != nil {
		return indexChild{}, fmt.Errorf("%s: %w", e.Source, err)
	}
	if err := checkChildType(e.Source, mt, format); err != nil {
		return indexChild{}, err
	}
	desc := v1.Descriptor{MediaType: mt}
	if desc.Digest, err = e.Image.Digest(); err != nil {
		return indexChild{}, fmt.Errorf("%s: %w", e.Source, err)
	}
	if desc.Size, err = e.Image.Size(); err != nil {
		return indexChild{}, fmt.Errorf("%s: %w", e.Source, err)
	}
	cf, err := e.Image.ConfigFile()
	if err != nil {
		return indexChild{}, fmt.Errorf("reading the config of %s: %w", e.Source, err)
	}
	have := cf.Platform()
	if have == nil || have.OS == "" || have.Architecture == "" {
		return indexChild{}, fmt.Errorf("%s: its config names no os and architecture, so it has no place in an index", e.Source)
	}
	desc.Platform = have.DeepCopy()
	if e.Platform != nil {
		if err := checkPlatform(e.Source, *e.Platform, *have); err != nil {
			return indexChild{}, err
		}
	}
	if len(e.Annotations) > 0 {
		desc.Annotations = maps.Clone(e.Annotations)
	}
	return indexChild{desc: desc, img: e.Image, key: platformKey(have), source: e.Source}, nil
}

func checkChildType(source string, mt types.MediaType, format IndexFormat) error {
	switch {
	case mt == types.DockerManifestSchema2:
		return nil
	case mt == types.OCIManifestSchema1 && format == FormatDocker:
		return fmt.Errorf("%w: %s is an OCI image manifest and a Docker manifest list holds Docker schema 2 manifests only: use the oci format, or build the image with Docker media types", ErrIndexFormat, source)
	case mt == types.OCIManifestSchema1:
		return nil
	}
	return fmt.Errorf("%w: %s is a %s, not an image manifest", ErrIndexFormat, source, mt)
}

func checkAnnotations(what string, annotations map[string]string, format IndexFormat) error {
	if len(annotations) > 0 && format == FormatDocker {
		return fmt.Errorf("%w: annotations on %s: a Docker manifest list has no annotations; use the oci format", ErrIndexFormat, what)
	}
	for k := range annotations {
		if k == "" {
			return fmt.Errorf("annotations on %s: empty key", what)
		}
	}
	return nil
}

// checkPlatform compares os, architecture and variant after normalisation,
// and os.version when both name one.
func checkPlatform(source string, want specs.Platform, have v1.Platform) error {
	got := platform.FromV1(&have)
	if platform.Equal(want, got) && (want.OSVersion == "" || have.OSVersion == "" || want.OSVersion == have.OSVersion) {
		return nil
	}
	return fmt.Errorf("%w: %s was asked to be %s but its config says %s", ErrPlatformMismatch, source, platformLabel(platform.ToV1(want)), platformLabel(&have))
}

// platformKey is a child's platform as compared for order and duplicates.
func platformKey(p *v1.Platform) string {
	features := slices.Clone(p.OSFeatures)
	slices.Sort(features)
	return platform.Format(platform.FromV1(p)) + "\x00" + p.OSVersion + "\x00" + strings.Join(features, ",")
}

// platformLabel is a platform for messages: os/arch[/variant], and the
// os.version when there is one.
func platformLabel(p *v1.Platform) string {
	s := platform.Format(platform.FromV1(p))
	if p.OSVersion != "" {
		s += " (os.version " + p.OSVersion + ")"
	}
	return s
}

// builtIndex is the index BuildIndex makes: its manifest serialised once, so
// the digest is fixed, and its images at hand for remote.WriteIndex and
// Layout.WriteIndex.
type builtIndex struct {
	mt     types.MediaType
	im     *v1.IndexManifest
	raw    []byte
	digest v1.Hash
	images map[v1.Hash]v1.Image
}

var _ v1.ImageIndex = (*builtIndex)(nil)

func newBuiltIndex(mt types.MediaType, children []indexChild, annotations map[string]string) (*builtIndex, error) {
	b := &builtIndex{
		mt:     mt,
		im:     &v1.IndexManifest{SchemaVersion: 2, MediaType: mt, Manifests: make([]v1.Descriptor, len(children))},
		images: make(map[v1.Hash]v1.Image, len(children)),
	}
	if len(annotations) > 0 {
		b.im.Annotations = maps.Clone(annotations)
	}
	for i, c := range children {
		b.im.Manifests[i] = c.desc
		b.images[c.desc.Digest] = c.img
	}
	var err error
	if b.raw, err = json.Marshal(b.im); err != nil {
		return nil, fmt.Errorf("encoding index: %w", err)
	}
	if b.digest, _, err = v1.SHA256(bytes.NewReader(b.raw)); err != nil {
		return nil, err
	}
	return b, nil
}

func (b *builtIndex) MediaType() (types.MediaType, error)       { return b.mt, nil }
func (b *builtIndex) Digest() (v1.Hash, error)                  { return b.digest, nil }
func (b *builtIndex) Size() (int64, error)                      { return int64(len(b.raw)), nil }
func (b *builtIndex) IndexManifest() (*v1.IndexManifest, error) { return b.im.DeepCopy(), nil }
func (b *builtIndex) RawManifest() ([]byte, error)              { return slices.Clone(b.raw), nil }

func (b *builtIndex) Image(h v1.Hash) (v1.Image, error) {
	if img, ok := b.images[h]; ok {
		return img, nil
	}
	return nil, fmt.Errorf("index %s has no image %s", b.digest, h)
}

func (b *builtIndex) ImageIndex(h v1.Hash) (v1.ImageIndex, error) {
	return nil, fmt.Errorf("index %s has no child index %s: kiln's indexes hold images only", b.digest, h)
}

// indexResolveJobs bounds how many sources IndexEntries resolves at once.
const indexResolveJobs = 4

// IndexEntries resolves references to entries for BuildIndex, in the order
// given: an image gives one entry; an index gives one for each of its
// platform images, with Platform set to what that index claims so that
// BuildIndex checks it against the config. Attestation manifests and other
// artifacts of an index are left out; an index of indexes is an error.
//
// References are resolved in their own repository, never a mirror: the push
// mounts blobs from there. Only manifests and configs are fetched; the
// images stay lazy and are bound to ctx for the rest of their use.
func (c *Client) IndexEntries(ctx context.Context, refs ...name.Reference) ([]IndexEntry, error) {
	found := make([][]IndexEntry, len(refs))
	var g errgroup.Group // not WithContext: its context ends at Wait, and the lazy images need theirs after
	g.SetLimit(indexResolveJobs)
	for i, ref := range refs {
		g.Go(func() (err error) {
			found[i], err = c.indexEntries(ctx, ref)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return slices.Concat(found...), nil
}

func (c *Client) indexEntries(ctx context.Context, ref name.Reference) ([]IndexEntry, error) {
	desc, err := c.get(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", ref, err)
	}
	var out []IndexEntry
	switch {
	case desc.MediaType.IsImage():
		img, err := desc.Image()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ref, err)
		}
		out = []IndexEntry{{Image: img, Source: ref.String()}}
	case desc.MediaType.IsIndex():
		if out, err = indexChildren(ref, desc); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("%s is a %s, neither an image nor an index", ref, desc.MediaType)
	}
	for _, e := range out { // fetch configs now, so that a failure names the source
		if _, err := e.Image.ConfigFile(); err != nil {
			return nil, fmt.Errorf("reading the config of %s: %w", e.Source, err)
		}
	}
	return out, nil
}

func indexChildren(ref name.Reference, desc *remote.Descriptor) ([]IndexEntry, error) {
	idx, err := desc.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	var out []IndexEntry
	for _, d := range im.Manifests {
		switch {
		case isAttestation(d):
			continue
		case d.MediaType.IsIndex():
			return nil, fmt.Errorf("%s holds another index (%s): name that one instead", ref, d.Digest)
		case !d.MediaType.IsImage():
			continue
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			return nil, fmt.Errorf("%s: image %s: %w", ref, d.Digest, err)
		}
		e := IndexEntry{Image: img, Source: ref.String()}
		if d.Platform != nil {
			p := platform.FromV1(d.Platform)
			e.Platform = &p
		}
		out = append(out, e)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s is an index with no platform images", ref)
	}
	return out, nil
}

// isAttestation reports whether an index entry is a buildx attestation
// manifest (platform unknown/unknown) rather than an image to run.
func isAttestation(d v1.Descriptor) bool {
	if d.Annotations["vnd.docker.reference.type"] == "attestation-manifest" {
		return true
	}
	return d.Platform != nil && d.Platform.OS == "unknown" && d.Platform.Architecture == "unknown"
}

package manifest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"sync/atomic"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// ErrIntegrity marks content from a registry, a cache or an OCI layout that
// does not match what refers to it: a blob whose bytes do not hash to its
// digest, a config whose diff_ids do not match the layers, a manifest with
// impossible values. It is never the user's own input.
var ErrIntegrity = errors.New("content does not match its description")

// drainLimit is how much of a stream Close reads to reach its end when the
// consumer stopped early: a tar's end-of-archive padding and a gzip trailer
// are a few KiB. A consumer that stops further from the end did not trust
// the content, and the rest is not fetched for it.
const drainLimit = 1 << 20

// layerTypes are the layer media types kiln knows how to read.
var layerTypes = map[types.MediaType]bool{
	types.OCILayer:                       true,
	types.OCILayerZStd:                   true,
	types.OCIUncompressedLayer:           true,
	types.OCIRestrictedLayer:             true,
	types.OCIUncompressedRestrictedLayer: true,
	types.DockerLayer:                    true,
	types.DockerForeignLayer:             true,
	types.DockerUncompressedLayer:        true,
}

// CheckManifest refuses an image manifest with impossible values, before
// anything of the image is used: negative sizes, digests kiln cannot check,
// layer media types it does not know.
func CheckManifest(m *v1.Manifest) error {
	if m.SchemaVersion != 2 {
		return fmt.Errorf("%w: manifest schemaVersion %d, want 2", ErrIntegrity, m.SchemaVersion)
	}
	if err := checkDescriptor("config", m.Config); err != nil {
		return err
	}
	for i, l := range m.Layers {
		what := fmt.Sprintf("layer %d", i)
		if err := checkDescriptor(what, l); err != nil {
			return err
		}
		if !layerTypes[l.MediaType] {
			return fmt.Errorf("%w: %s (%s) has media type %q, not an image layer", ErrIntegrity, what, l.Digest, l.MediaType)
		}
	}
	return nil
}

func checkDescriptor(what string, d v1.Descriptor) error {
	if d.Size < 0 {
		return fmt.Errorf("%w: %s (%s) has size %d", ErrIntegrity, what, d.Digest, d.Size)
	}
	if err := checkHash(d.Digest); err != nil {
		return fmt.Errorf("%w: %s: digest %q: %v", ErrIntegrity, what, d.Digest, err)
	}
	return nil
}

// VerifiedImage checks img's manifest and config against each other and
// returns the image with every layer stream checked as it is read: the
// compressed bytes against the layer's digest and size, the uncompressed
// tar against the config's diff_id. A stream that does not match fails its
// last Read (io.EOF becomes an ErrIntegrity error) and its Close. Close reads
// what a consumer left unread (a tar reader stops at the end-of-archive
// marker) so that the check runs; consumers that use the content must check
// Close's error. name (the image reference) is used in errors. An image
// that VerifiedImage returned is returned as it is.
func VerifiedImage(img v1.Image, name string) (v1.Image, error) {
	if v, ok := img.(*verifiedImage); ok {
		return v, nil // checked already, under the name its source gave
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, fmt.Errorf("%s: reading the manifest: %w", name, err)
	}
	if err := CheckManifest(m); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	raw, err := img.RawConfigFile()
	if err != nil {
		return nil, fmt.Errorf("%s: reading the config: %w", name, err)
	}
	if err := checkBytes(raw, m.Config.Digest, m.Config.Size); err != nil {
		return nil, fmt.Errorf("%s: config: %w", name, err)
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("%s: %w: config %s: %v", name, ErrIntegrity, m.Config.Digest, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("%s: %w: the config lists %d diff_ids for %d layers", name, ErrIntegrity, len(cfg.RootFS.DiffIDs), len(m.Layers))
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("%s: listing layers: %w", name, err)
	}
	if len(layers) != len(m.Layers) {
		return nil, fmt.Errorf("%s: %w: %d layers for %d in the manifest", name, ErrIntegrity, len(layers), len(m.Layers))
	}
	v := &verifiedImage{Image: img, layers: make([]v1.Layer, len(layers))}
	for i, l := range layers {
		diffID := cfg.RootFS.DiffIDs[i]
		if err := checkHash(diffID); err != nil {
			return nil, fmt.Errorf("%s: %w: layer %d: diff_id %q: %v", name, ErrIntegrity, i, diffID, err)
		}
		ml, fromRegistry := l.(*remote.MountableLayer)
		var vl v1.Layer = &verifiedLayer{Layer: l, desc: m.Layers[i], diffID: diffID, what: fmt.Sprintf("%s: layer %d", name, i), remote: fromRegistry}
		if fromRegistry {
			// Keep the registry's cross-repository mount of base layers.
			vl = &remote.MountableLayer{Layer: vl, Reference: ml.Reference}
		}
		v.layers[i] = vl
	}
	return v, nil
}

func checkBytes(data []byte, want v1.Hash, size int64) error {
	sum := sha256.Sum256(data)
	got := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	if got != want {
		return fmt.Errorf("%w: %w: want %s, got %s", ErrIntegrity, ErrDigestMismatch, want, got)
	}
	if int64(len(data)) != size {
		return fmt.Errorf("%w: %w: want %d bytes, got %d", ErrIntegrity, ErrSizeMismatch, size, len(data))
	}
	return nil
}

type verifiedImage struct {
	v1.Image
	layers []v1.Layer
}

func (v *verifiedImage) Layers() ([]v1.Layer, error) {
	return append([]v1.Layer(nil), v.layers...), nil
}

func (v *verifiedImage) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	for _, l := range v.layers {
		if d, err := l.Digest(); err == nil && d == h {
			return l, nil
		}
	}
	return v.Image.LayerByDigest(h)
}

func (v *verifiedImage) LayerByDiffID(h v1.Hash) (v1.Layer, error) {
	for _, l := range v.layers {
		if d, err := l.DiffID(); err == nil && d == h {
			return l, nil
		}
	}
	return v.Image.LayerByDiffID(h)
}

type verifiedLayer struct {
	v1.Layer
	desc   v1.Descriptor
	diffID v1.Hash
	what   string
	remote bool                     // a registry's layer
	kept   atomic.Pointer[keptBlob] // see KeepBlobs
}

func (l *verifiedLayer) Digest() (v1.Hash, error) { return l.desc.Digest, nil }
func (l *verifiedLayer) DiffID() (v1.Hash, error) { return l.diffID, nil }
func (l *verifiedLayer) Size() (int64, error)     { return l.desc.Size, nil }
func (l *verifiedLayer) Descriptor() (*v1.Descriptor, error) {
	d := l.desc
	return &d, nil
}
func (l *verifiedLayer) MediaType() (types.MediaType, error) {
	return l.desc.MediaType, nil
}

// Compressed is the layer's blob, checked against its digest and size.
func (l *verifiedLayer) Compressed() (io.ReadCloser, error) { return l.compressed(true) }

// compressed is Compressed; spool: a registry's blob may be copied as it is
// read (KeepBlobs), which an output's own read has no use for.
func (l *verifiedLayer) compressed(spool bool) (io.ReadCloser, error) {
	k := l.kept.Load()
	if k != nil {
		k.mu.Lock()
		spooled := k.spooled
		k.mu.Unlock()
		if spooled != "" {
			if f, err := os.Open(spooled); err == nil {
				return f, nil // copied from the registry and checked by this process
			}
		}
	}
	rc, err := l.Layer.Compressed()
	if err != nil {
		return nil, err
	}
	vr := newVerifyReader(rc, l.desc.Digest, l.desc.Size, l.what+" ("+l.desc.Digest.String()+")")
	if _, isFile := rc.(*os.File); spool && k != nil && !isFile {
		return k.spool(vr), nil
	}
	return vr, nil
}

// Uncompressed is the layer's tar, decompressed from the checked blob and
// itself checked against the config's diff_id.
func (l *verifiedLayer) Uncompressed() (io.ReadCloser, error) {
	c, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	d, err := decompress(c)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("%s (%s): %w: %v", l.what, l.desc.Digest, ErrIntegrity, err)
	}
	// Decompressing (with the reading and hashing of the blob under it) in a
	// goroutine of its own runs beside the diff_id hash and the consumer.
	ad := newReadahead(context.Background(), func() (io.ReadCloser, error) { return d, nil }, 4)
	u := newVerifyReader(ad, l.diffID, -1, l.what+" (diff_id "+l.diffID.String()+")")
	return &layerReader{u: u, c: c}, nil
}

// layerReader reads the uncompressed tar; closing it checks both streams.
type layerReader struct {
	u *verifyReader // uncompressed, over c
	c io.ReadCloser // compressed (a *verifyReader)
}

func (r *layerReader) Read(p []byte) (int, error) { return r.u.Read(p) }

func (r *layerReader) Close() error {
	uerr := r.u.Close()
	cerr := r.c.Close()
	if uerr != nil {
		return uerr
	}
	return cerr
}

// decompress picks a decompressor by the stream's first bytes, as
// containerd does: registries mislabel layers often enough.
func decompress(r io.ReadCloser) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, err := br.Peek(4)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		z, err := gzip.NewReader(br)
		if err != nil {
			return nil, err
		}
		return z, nil
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		z, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		return z.IOReadCloser(), nil
	}
	return io.NopCloser(br), nil
}

// verifyReader hashes and counts what passes through and turns the end of
// the stream into an error when it does not match.
type verifyReader struct {
	r    io.ReadCloser
	h    hash.Hash
	want v1.Hash
	size int64 // -1: any
	n    int64
	what string
	err  error // sticky: the stream's end, checked, or a read error
}

func newVerifyReader(r io.ReadCloser, want v1.Hash, size int64, what string) *verifyReader {
	return &verifyReader{r: r, h: sha256.New(), want: want, size: size, what: what}
}

func (v *verifyReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if v.size >= 0 && v.n > v.size {
		v.err = fmt.Errorf("%s: %w: %w: more than the %d bytes the manifest gives", v.what, ErrIntegrity, ErrSizeMismatch, v.size)
		return n, v.err
	}
	if errors.Is(err, io.EOF) {
		v.err = v.check()
		return n, v.err
	}
	if err != nil {
		v.err = err
		if v.size >= 0 && v.n == v.size {
			// All the bytes came, with an error: go-containerregistry's
			// own check of a registry blob fails this way. Say what is
			// wrong in kiln's terms, so that it counts as bad content.
			if cerr := v.check(); !errors.Is(cerr, io.EOF) {
				v.err = cerr
			}
		}
		return n, v.err
	}
	return n, err
}

func (v *verifyReader) check() error {
	if v.size >= 0 && v.n != v.size {
		return fmt.Errorf("%s: %w: %w: %d bytes, the manifest gives %d", v.what, ErrIntegrity, ErrSizeMismatch, v.n, v.size)
	}
	got := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(v.h.Sum(nil))}
	if got != v.want {
		return fmt.Errorf("%s: %w: %w: the content is %s", v.what, ErrIntegrity, ErrDigestMismatch, got)
	}
	return io.EOF
}

// Close reads up to drainLimit bytes the consumer left, so that the end of
// the stream is checked, and reports a mismatch.
func (v *verifyReader) Close() error {
	if v.err == nil {
		io.Copy(io.Discard, io.LimitReader(v, drainLimit))
	}
	cerr := v.r.Close()
	if v.err != nil && !errors.Is(v.err, io.EOF) && errors.Is(v.err, ErrIntegrity) {
		return v.err
	}
	return cerr
}

// NewVerifyingReader checks rc as it is read, as a verified layer's streams
// are checked: the bytes must hash to want (and number size, unless size <
// 0). At the end a mismatch is the last Read's error and Close's (an
// ErrIntegrity error naming what); Close reads up to 1 MiB the consumer
// left, so that the end is checked.
func NewVerifyingReader(rc io.ReadCloser, want v1.Hash, size int64, what string) io.ReadCloser {
	return newVerifyReader(rc, want, size, what)
}

// IsVerified says whether l came from VerifiedImage: a layer of an image
// read from a registry, a cache or a layout, not one built in this
// process.
func IsVerified(l v1.Layer) bool {
	if ml, ok := l.(*remote.MountableLayer); ok {
		l = ml.Layer
	}
	_, ok := l.(*verifiedLayer)
	return ok
}

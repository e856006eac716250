package rootfs

import (
	"context"
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"kiln/manifest"
)

// Unpack applies every layer of img, base first, onto the root. The stats
// add up the layers'; warnings say which layer they come from. Each layer
// is read (fetched, decompressed, checked) ahead of its turn while the one
// before it is applied.
func (r *Root) Unpack(ctx context.Context, img v1.Image, opts ...ApplyOption) (*ApplyStats, error) {
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("listing layers: %w", err)
	}
	return r.UnpackLayers(ctx, layers, opts...)
}

// UnpackLayers applies layers in order, as Unpack applies an image's.
func (r *Root) UnpackLayers(ctx context.Context, layers []v1.Layer, opts ...ApplyOption) (*ApplyStats, error) {
	total := &ApplyStats{}
	var next io.ReadCloser
	defer func() {
		if next != nil {
			next.Close()
		}
	}()
	for i, l := range layers {
		cur := next
		if cur == nil {
			cur = readLayer(ctx, l)
		}
		next = nil
		if i+1 < len(layers) {
			next = readLayer(ctx, layers[i+1])
		}
		s, err := r.applyStream(ctx, cur, opts)
		if err != nil {
			return nil, fmt.Errorf("unpacking layer %d%s: %w", i, describe(l), err)
		}
		total.add(i, s)
	}
	return total, nil
}

// UnpackLayer applies one layer of an image onto the root, as Unpack
// applies each: its stream is read in the background as it is applied,
// and to its end, so that a layer checked as it is read (see
// manifest.VerifiedImage) is checked whole. Into an empty root, it is the
// layer's own tree.
func (r *Root) UnpackLayer(ctx context.Context, l v1.Layer, opts ...ApplyOption) (*ApplyStats, error) {
	s, err := r.applyStream(ctx, readLayer(ctx, l), opts)
	if err != nil {
		return nil, fmt.Errorf("unpacking layer%s: %w", describe(l), err)
	}
	return s, nil
}

func (r *Root) applyStream(ctx context.Context, rc io.ReadCloser, opts []ApplyOption) (*ApplyStats, error) {
	var stats *ApplyStats
	err := consume(rc, func(rc io.Reader) (err error) {
		stats, err = r.ApplyLayer(ctx, rc, opts...)
		return err
	})
	return stats, err
}

// readaheadBlocks: enough 256 KiB blocks that decompressing never waits for
// a folder of small files to be written, few enough that two layers in
// flight (see UnpackLayers) hold a few MiB.
const readaheadBlocks = 8

// readLayer starts reading l's uncompressed tar in the background.
func readLayer(ctx context.Context, l v1.Layer) io.ReadCloser {
	return manifest.Readahead(ctx, l.Uncompressed, readaheadBlocks)
}

// consume hands rc to fn, then reads the stream to its end and closes it,
// so that a layer checked as it is read is checked whole: a tar reader
// stops at the end-of-archive marker, before the bytes that decide the
// digest. A mismatch is the error, even when fn succeeded.
func consume(rc io.ReadCloser, fn func(io.Reader) error) error {
	if err := fn(rc); err != nil {
		if cerr := rc.Close(); cerr != nil {
			return cerr // a layer that does not match its digest explains whatever fn found
		}
		return err
	}
	if _, err := io.Copy(io.Discard, rc); err != nil {
		rc.Close()
		return err
	}
	return rc.Close()
}

// describe names a layer in errors by its digest, when it has one.
func describe(l v1.Layer) string {
	if d, err := l.Digest(); err == nil {
		return " (" + d.String() + ")"
	}
	return ""
}

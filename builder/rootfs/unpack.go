package rootfs

import (
	"context"
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Unpack applies every layer of img, base first, onto the root. The stats
// add up the layers'; warnings say which layer they come from.
func (r *Root) Unpack(ctx context.Context, img v1.Image, opts ...ApplyOption) (*ApplyStats, error) {
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("listing layers: %w", err)
	}
	total := &ApplyStats{}
	for i, l := range layers {
		s, err := r.applyImageLayer(ctx, l, opts)
		if err != nil {
			return nil, fmt.Errorf("unpacking layer %d%s: %w", i, describe(l), err)
		}
		total.add(i, s)
	}
	return total, nil
}

func (r *Root) applyImageLayer(ctx context.Context, l v1.Layer, opts []ApplyOption) (*ApplyStats, error) {
	var stats *ApplyStats
	err := readLayer(l, func(rc io.Reader) (err error) {
		stats, err = r.ApplyLayer(ctx, rc, opts...)
		return err
	})
	return stats, err
}

// readLayer hands l's uncompressed tar to fn, then reads the stream to its
// end and closes it, so that a layer checked as it is read (see
// manifest.VerifiedImage) is checked whole: a tar reader stops at the
// end-of-archive marker, before the bytes that decide the digest. A
// mismatch is the error, even when fn succeeded.
func readLayer(l v1.Layer, fn func(io.Reader) error) error {
	rc, err := l.Uncompressed()
	if err != nil {
		return err
	}
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

package rootfs

import (
	"context"
	"fmt"

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
	rc, err := l.Uncompressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return r.ApplyLayer(ctx, rc, opts...)
}

// describe names a layer in errors by its digest, when it has one.
func describe(l v1.Layer) string {
	if d, err := l.Digest(); err == nil {
		return " (" + d.String() + ")"
	}
	return ""
}

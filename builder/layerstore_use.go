package builder

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"kiln/builder/layerstore"
	"kiln/builder/rootfs"
	"kiln/builder/run"
)

// WithLayerStore makes stage filesystems overlay mounts of layers kept
// unpacked in s (see builder/layerstore) instead of fresh unpacks: a base
// unpacked once on this machine is never unpacked again. Where the mount is
// refused, the stage is unpacked as without it.
func WithLayerStore(s *layerstore.Store) Option { return func(o *options) { o.layers = s } }

// StoreUnpacker is the layer store's Unpacker: the layer applied as a
// container runtime would, read and decompressed in a goroutine of its own
// while it is applied (as a stage unpack reads it), its streams checked
// against its digests.
func StoreUnpacker(ctx context.Context, dir string, l v1.Layer) error {
	root, err := rootfs.Open(dir)
	if err != nil {
		return err
	}
	_, err = root.UnpackLayer(ctx, l) // the diff_id is checked at the stream's end
	return err
}

// useLayerStore says whether stages mount from the layer store: in chroot
// isolation with overlay snapshots, where every RUN step writes to an
// overlay of its own. A step writing straight onto a stored stack (walk
// snapshots, container isolation) would meet overlay's copy-up, which
// splits a hardlinked file's names, where an unpacked tree keeps them one.
func (b *builder) useLayerStore() bool {
	if b.o.layers == nil || b.o.snapshot == SnapshotWalk {
		return false
	}
	iso := b.o.isolation
	if iso == "" {
		iso, _ = b.detected.get()
	}
	return iso == run.Chroot
}

// mountStored mounts img's layers from the store on dir, unpacking into
// the store those it lacks. false: the mount was refused here, and dir is
// still empty for an unpack.
func (b *builder) mountStored(ctx context.Context, s *stageState, img v1.Image, dir string) (bool, error) {
	layers, err := img.Layers()
	if err != nil || len(layers) == 0 {
		return false, err
	}
	start := time.Now()
	lowers, unpacked, err := b.o.layers.Ensure(ctx, layers)
	if err != nil {
		return false, fmt.Errorf("stage %s: %w", s.name, err)
	}
	for i, j := 0, len(lowers)-1; i < j; i, j = i+1, j-1 {
		lowers[i], lowers[j] = lowers[j], lowers[i] // the top layer first
	}
	upper, err := os.MkdirTemp(b.work, "stage-upper-")
	if err != nil {
		return false, err
	}
	work, err := os.MkdirTemp(b.work, "stage-work-")
	if err != nil {
		return false, err
	}
	b.roots = append(b.roots, upper, work)
	if err := layerstore.CopyRootAttrs(lowers[0], upper); err != nil {
		return false, err
	}
	if err := layerstore.Mount(lowers, upper, work, dir); err != nil {
		if errors.Is(err, layerstore.ErrCannotMount) {
			b.o.log.Warn("stage filesystem not mounted from the layer store; unpacking it", "stage", s.name, "err", err)
			return false, nil
		}
		return false, err
	}
	b.mounts = append(b.mounts, dir)
	b.o.log.Info("mounted the stage's filesystem from the layer store", "stage", s.name, "layers", len(layers),
		"unpacked_now", unpacked, "seconds", roundSeconds(time.Since(start)))
	return true, nil
}

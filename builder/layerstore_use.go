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
	"kiln/manifest"
)

// WithLayerStore makes stage filesystems overlay mounts of layers kept
// unpacked in s (see builder/layerstore) instead of fresh unpacks: a base
// unpacked once on this machine is never unpacked again. Where the mount is
// refused, the stage is unpacked as without it.
func WithLayerStore(s *layerstore.Store) Option { return func(o *options) { o.layers = s } }

// StoreUnpacker is the layer store's Unpacker: the layers applied as a
// container runtime would, each read and decompressed in a goroutine of its
// own (the next one fetched ahead) while it is applied, as a stage unpack
// reads them, its streams checked against its digests.
func StoreUnpacker(ctx context.Context, dir string, layers []v1.Layer) error {
	root, err := rootfs.Open(dir)
	if err != nil {
		return err
	}
	stats, err := root.UnpackLayers(ctx, layers) // the diff_ids are checked at the streams' ends
	if err == nil && len(stats.SkippedOwners) > 0 {
		// A stored tree is the layers' files as they are: a copy-up of a
		// file that lost its owner would put the wrong one in a layer.
		for p, o := range stats.SkippedOwners {
			return fmt.Errorf("%w: %d entries have owners this user namespace does not map, such as %s (%d:%d)",
				layerstore.ErrNotStorable, len(stats.SkippedOwners), p, o.UID, o.GID)
		}
	}
	return err
}

// useLayerStore says whether stages mount from the layer store: in chroot
// isolation (or rootless in kiln's own user namespace, where steps are
// isolated as in chroot) with overlay snapshots, where every RUN step
// writes to an overlay of its own. A step writing straight onto a stored stack (walk
// snapshots, container isolation) would meet overlay's copy-up, which
// splits a hardlinked file's names, where an unpacked tree keeps them one.
func (b *builder) useLayerStore() bool {
	if b.o.layers == nil || !b.o.layers.Mounts() || b.o.snapshot == SnapshotWalk {
		return false
	}
	iso := b.o.isolation
	if iso == "" {
		iso, _ = run.Detected()
	}
	return iso == run.Chroot || (iso == run.Rootless && run.InOwnUserNamespace())
}

// mountStored mounts img's layers from the store on dir, unpacking into
// the store those it lacks. Only the layers read from a registry or a
// cache (the base's, and layer cache hits on it) are stored: the layers
// this build made (a COPY before the first RUN) are applied onto the
// mount, so that a stage whose base is stored costs what its own layers
// do, and the store never fills with one build's files. false: the mount
// was refused here (or there is nothing stored to mount), and dir is
// still empty for an unpack.
func (b *builder) mountStored(ctx context.Context, s *stageState, img v1.Image, dir string) (bool, error) {
	all, err := img.Layers()
	if err != nil {
		return false, err
	}
	n := 0
	for n < len(all) && manifest.IsVerified(all[n]) {
		n++
	}
	if n == 0 {
		return false, nil
	}
	layers, own := all[:n], all[n:]
	start := time.Now()
	lowers, unpacked, err := b.o.layers.Ensure(ctx, layers, true)
	if errors.Is(err, layerstore.ErrNotStorable) {
		b.o.log.Warn("stage filesystem not mounted from the layer store; unpacking it", "stage", s.name, "err", err)
		return false, nil
	}
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
	s.stack = &layerstore.Stack{Lowers: lowers, Upper: upper, Work: work}
	b.o.log.Info("mounted the stage's filesystem from the layer store", "stage", s.name, "layers", len(layers),
		"unpacked_now", unpacked, "whole", len(lowers) == 1 && len(layers) > 1, "seconds", roundSeconds(time.Since(start)))
	if len(own) == 0 {
		return true, nil
	}
	start = time.Now()
	root, err := rootfs.Open(dir)
	if err != nil {
		return false, err
	}
	stats, err := root.UnpackLayers(ctx, own)
	if err != nil {
		return false, fmt.Errorf("applying stage %s's own layers onto its stored base: %w", s.name, err)
	}
	s.noteOwners(stats)
	b.o.log.Info("applied the stage's own layers onto it", "stage", s.name, "layers", len(own), "entries", stats.Entries,
		"seconds", roundSeconds(time.Since(start)))
	return true, nil
}

// unpackImage unpacks img onto root for stage, its layers' uncompressed
// tars read from (and kept in) the layer store when there is one (see
// builder/layerstore/tars.go). A stored tar found damaged at its end was
// removed by then: the root is emptied and unpacked once more, and that
// layer fetched again.
func (b *builder) unpackImage(ctx context.Context, root *rootfs.Root, img v1.Image, stage string) (*rootfs.ApplyStats, error) {
	s := b.o.layers
	if s == nil {
		return root.Unpack(ctx, img)
	}
	for attempt := 0; ; attempt++ {
		read0, kept0 := s.TarCounts()
		timg, err := s.TarImage(img)
		if err != nil {
			return nil, err
		}
		stats, err := root.Unpack(ctx, timg)
		if errors.Is(err, layerstore.ErrDamagedTar) && attempt == 0 {
			b.o.log.Warn("layer store: a stored tar was damaged; unpacking the stage again", "stage", stage, "err", err)
			if cerr := root.Clear(ctx); cerr != nil {
				return nil, cerr
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		if read, kept := s.TarCounts(); read > read0 || kept > kept0 {
			b.o.log.Info("layer store: uncompressed tars", "stage", stage, "read", read-read0, "kept", kept-kept0)
		}
		return stats, nil
	}
}

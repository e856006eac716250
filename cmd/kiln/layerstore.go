package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/urfave/cli/v2"

	"kiln/builder"
	"kiln/builder/layerstore"
	"kiln/builder/snapshot"
	"kiln/manifest"
	"kiln/warmer"
)

func layerStoreFlag() cli.Flag {
	return &cli.BoolFlag{Name: "layer-store", Value: true, Usage: "keep layers in the cache folder (.kiln/unpacked) so no base is unpacked twice on this machine: unpacked, and stage filesystems mounted from them, as root where overlay mounts and rootless with a subordinate id range (in a user namespace of kiln's own); elsewhere (a pod, rootless with one id) their uncompressed tars, so an unpack neither fetches nor decompresses them again", EnvVars: envs("LAYER_STORE")}
}

// openLayerStore opens the layer store of the cache folder when it can
// serve: a writable cache folder. As root where overlay mounts, it keeps
// layers unpacked and stages mount them; elsewhere it keeps their
// uncompressed tars. nil otherwise (stages are unpacked, as without it);
// why is logged.
func openLayerStore(c *cli.Context, cacheDir string, log *slog.Logger) *layerstore.Store {
	if !c.Bool("layer-store") || cacheDir == "" {
		return nil
	}
	l, err := manifest.OpenLayout(cacheDir)
	if err == nil {
		err = l.CheckWritable()
	}
	if err != nil {
		log.Info("no layer store: the cache folder cannot be written (stages are unpacked)", "cache", cacheDir, "err", err)
		return nil
	}
	unpack := builder.StoreUnpacker
	if os.Geteuid() != 0 {
		log.Debug("layer store: tars only (not root: overlay cannot be mounted)")
		unpack = nil
	} else if ok, why := snapshot.Supported(); !ok {
		log.Debug("layer store: tars only (overlay cannot be mounted here)", "why", why)
		unpack = nil
	}
	s, err := layerstore.Open(l, unpack, log)
	if err != nil {
		log.Info("no layer store (stages are unpacked)", "err", err)
		return nil
	}
	return s
}

// unpackWarmed fills the layer store with every warmed (image, platform),
// so the first build of the day mounts its bases at once, or where overlay
// cannot be mounted, neither fetches nor decompresses them (kiln warm
// --unpack).
func unpackWarmed(c *cli.Context, cacheDir string, items []warmer.Item, log *slog.Logger) (layers, unpacked int, err error) {
	s := openLayerStore(c, cacheDir, log)
	if s == nil {
		return 0, 0, fmt.Errorf("--unpack: the layer store needs a writable cache folder (%s)", cacheDir)
	}
	defer s.Close()
	if !s.Mounts() {
		log.Info("--unpack: overlay cannot be mounted here (not root, or no overlay permitted): keeping each layer's uncompressed tar instead, which builds here unpack without fetching or decompressing")
	}
	l, err := manifest.OpenExistingLayout(cacheDir)
	if err != nil {
		return 0, 0, err
	}
	for _, it := range items {
		ref, err := name.ParseReference(it.Ref)
		if err != nil {
			return layers, unpacked, err
		}
		img, _, err := l.Image(ref, it.Platform)
		if err != nil {
			return layers, unpacked, fmt.Errorf("--unpack %s: %w", it.Ref, err)
		}
		img, err = manifest.VerifiedImage(img, it.Ref)
		if err != nil {
			return layers, unpacked, err
		}
		ls, err := img.Layers()
		if err != nil {
			return layers, unpacked, err
		}
		layers += len(ls)
		if !s.Mounts() {
			for _, layer := range ls {
				stored, err := s.StoreTar(layer)
				if err != nil {
					return layers, unpacked, fmt.Errorf("--unpack %s: %w", it.Ref, err)
				}
				if stored {
					unpacked++
				}
			}
			continue
		}
		_, n, err := s.Ensure(c.Context, ls, false)
		if errors.Is(err, layerstore.ErrNotStorable) {
			log.Warn("--unpack: not stored (builds of it unpack it)", "image", it.Ref, "err", err)
			continue
		}
		if err != nil {
			return layers, unpacked, fmt.Errorf("--unpack %s: %w", it.Ref, err)
		}
		unpacked += n
	}
	return layers, unpacked, nil
}

// keptChains are the chain IDs and the diff_ids of every image the cache
// holds (under each entry, every platform's image), which prune keeps in
// the layer store.
func keptChains(cacheDir string) (chains, diffIDs map[v1.Hash]bool, err error) {
	l, err := manifest.OpenExistingLayout(cacheDir)
	if err != nil {
		return nil, nil, err
	}
	idx, err := l.ReadIndex()
	if err != nil {
		return nil, nil, err
	}
	keep, diffs := map[v1.Hash]bool{}, map[v1.Hash]bool{}
	var walk func(d v1.Descriptor)
	walk = func(d v1.Descriptor) {
		switch {
		case d.MediaType.IsIndex():
			sub, err := l.ReadIndexBlob(d.Digest)
			if err != nil {
				return
			}
			for _, m := range sub.Manifests {
				walk(m)
			}
		case d.MediaType.IsImage():
			img, err := l.ImageByDigest(d.Digest)
			if err != nil {
				return
			}
			cf, err := img.ConfigFile()
			if err != nil {
				return
			}
			for _, ch := range layerstore.ChainIDs(cf.RootFS.DiffIDs) {
				keep[ch] = true
			}
			for _, d := range cf.RootFS.DiffIDs {
				diffs[d] = true
			}
		}
	}
	for _, d := range idx.Manifests {
		walk(d)
	}
	return keep, diffs, nil
}

// pruneLayerStore drops the stored layers no cached image uses. The
// caller (warm --prune) runs it while no build uses the cache.
func pruneLayerStore(ctx context.Context, cacheDir string, log *slog.Logger) (int, int64, error) {
	unlock, err := lockCacheExclusive(ctx, cacheDir, log)
	if err != nil {
		return 0, 0, err
	}
	defer unlock()
	keep, diffIDs, err := keptChains(cacheDir)
	if err != nil {
		return 0, 0, err
	}
	n, bytes, err := layerstore.Prune(cacheDir, keep)
	if err != nil {
		return n, bytes, err
	}
	tn, tbytes, err := layerstore.PruneTars(cacheDir, diffIDs)
	return n + tn, bytes + tbytes, err
}

func lockCacheExclusive(ctx context.Context, cacheDir string, log *slog.Logger) (func() error, error) {
	l, err := manifest.OpenExistingLayout(cacheDir)
	if err != nil {
		return nil, err
	}
	return l.LockExclusive(ctx, func() {
		log.Info("waiting for builds using the layer store to finish", "cache", cacheDir)
	})
}

// printLayerStore reports the store's disk use (warm --verify).
func printLayerStore(w io.Writer, cacheDir string) {
	layers, err := layerstore.List(cacheDir)
	if err == nil && len(layers) > 0 {
		var n int64
		flat := 0
		for _, l := range layers {
			n += l.Bytes
			if l.Flat {
				flat++
			}
		}
		what := count(len(layers)-flat, "layer", "layers") + " unpacked"
		if flat > 0 {
			what += ", " + count(flat, "base", "bases") + " unpacked whole by builds"
		}
		fmt.Fprintf(w, "layer store: %s (%s on disk) in %s\n", what, manifest.FormatBytes(n), layerstore.Dir(cacheDir))
	}
	tars, err := layerstore.ListTars(cacheDir)
	if err == nil && len(tars) > 0 {
		var n int64
		for _, t := range tars {
			n += t.Bytes
		}
		fmt.Fprintf(w, "layer store: %s kept as uncompressed tars (%s) in %s\n", count(len(tars), "layer", "layers"), manifest.FormatBytes(n), layerstore.TarsDir(cacheDir))
	}
}

package manifest

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sync/errgroup"
)

// WriteImage stores img in the layout, streaming each layer, and files it
// in index.json under refName and under its PlatformRefName (replacing
// entries of those names; other platforms' names for refName stay). It
// returns the image's descriptor as filed.
func (l *Layout) WriteImage(ctx context.Context, img v1.Image, refName string) (v1.Descriptor, error) {
	desc, err := l.putImage(ctx, img)
	if err != nil {
		return v1.Descriptor{}, err
	}
	return desc, l.fileEntry(ctx, desc, refName, false, platformEntries(refName, []v1.Descriptor{desc}))
}

// WriteIndex stores every image of an index, then the index itself, filed
// under refName, with each platform image also filed under its
// PlatformRefName: tools that take one image per name (umoci) find each
// platform by name. Platform names an earlier write filed for refName are
// replaced.
func (l *Layout) WriteIndex(ctx context.Context, idx v1.ImageIndex, refName string) (v1.Descriptor, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return v1.Descriptor{}, err
	}
	children := make([]v1.Descriptor, 0, len(im.Manifests))
	for _, d := range im.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			return v1.Descriptor{}, fmt.Errorf("index child %s: %w", d.Digest, err)
		}
		stored, err := l.putImage(ctx, img)
		if err != nil {
			return v1.Descriptor{}, err
		}
		if d.Platform != nil {
			stored.Platform = d.Platform // as the index says: that is what a reader selects by
		}
		children = append(children, stored)
	}
	raw, err := idx.RawManifest()
	if err != nil {
		return v1.Descriptor{}, err
	}
	h, err := l.PutBlob(raw)
	if err != nil {
		return v1.Descriptor{}, err
	}
	mt, err := idx.MediaType()
	if err != nil {
		return v1.Descriptor{}, err
	}
	desc := v1.Descriptor{MediaType: mt, Digest: h, Size: int64(len(raw))}
	return desc, l.fileEntry(ctx, desc, refName, true, platformEntries(refName, children))
}

// putImage stores an image's layers, config and manifest (in that order,
// so a stored manifest always has its blobs).
func (l *Layout) putImage(ctx context.Context, img v1.Image) (v1.Descriptor, error) {
	layers, err := img.Layers()
	if err != nil {
		return v1.Descriptor{}, err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for _, layer := range layers {
		g.Go(func() error { return l.putLayer(gctx, layer) })
	}
	if err := g.Wait(); err != nil {
		return v1.Descriptor{}, err
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return v1.Descriptor{}, err
	}
	if _, err := l.PutBlob(cfg); err != nil {
		return v1.Descriptor{}, err
	}
	raw, err := img.RawManifest()
	if err != nil {
		return v1.Descriptor{}, err
	}
	h, err := l.PutBlob(raw)
	if err != nil {
		return v1.Descriptor{}, err
	}
	mt, err := img.MediaType()
	if err != nil {
		return v1.Descriptor{}, err
	}
	desc := v1.Descriptor{MediaType: mt, Digest: h, Size: int64(len(raw))}
	if cf, err := img.ConfigFile(); err == nil && cf.OS != "" {
		desc.Platform = cf.Platform()
	}
	return desc, nil
}

func (l *Layout) putLayer(ctx context.Context, layer v1.Layer) error {
	h, err := layer.Digest()
	if err != nil {
		return err
	}
	size, err := layer.Size()
	if err != nil {
		return err
	}
	if l.HasBlob(h, size) {
		return nil
	}
	if f := checkedBlob(ctx, layer); f != nil {
		defer f.Close()
		if err := l.putChecked(ctx, h, size, f); err != nil {
			return fmt.Errorf("writing layer %s: %w", h, err)
		}
		return nil
	}
	rc, err := compressedStream(layer)
	if err != nil {
		return err
	}
	defer rc.Close()
	if err := l.putCompressed(ctx, h, size, rc); err != nil {
		return fmt.Errorf("writing layer %s: %w", h, err)
	}
	return nil
}

// putCompressed stores blob h from rc, a layer's compressed stream. A
// verified layer's stream is checked by its reader, so the writer does not
// hash it again; one read from another layout's blob file on this
// filesystem (a warm cache's) is linked rather than copied (linkVerified).
func (l *Layout) putCompressed(ctx context.Context, h v1.Hash, size int64, rc io.Reader) error {
	vr, ok := rc.(*verifyReader)
	if !ok || vr.want != h || vr.size != size {
		_, err := l.WriteBlob(ctx, h, size, rc)
		return err
	}
	f, ok := vr.r.(*os.File)
	if !ok || !linkable(f, filepath.Dir(l.BlobPath(h))) {
		_, err := l.writeChecked(ctx, h, size, vr)
		return err
	}
	if linked, err := l.linkVerified(ctx, h, vr, f); linked || err != nil {
		return err
	}
	// Checked, but the link was refused: a copy, hashed as it is written.
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	_, err := l.WriteBlob(ctx, h, size, f)
	return err
}

// fileEntry puts desc into index.json under refName, then the platform
// entries, replacing entries of the same names; ownsPlatforms also drops
// every platform entry an earlier write filed for refName (an index
// rewritten with fewer platforms leaves no stale name).
func (l *Layout) fileEntry(ctx context.Context, desc v1.Descriptor, refName string, ownsPlatforms bool, platforms []v1.Descriptor) error {
	names := map[string]bool{}
	for _, p := range platforms {
		names[p.Annotations[AnnotationRefName]] = true
	}
	if refName != "" {
		names[refName] = true
		desc.Annotations = map[string]string{AnnotationRefName: refName}
	}
	return l.UpdateIndex(ctx, func(idx *v1.IndexManifest) (bool, error) {
		kept := idx.Manifests[:0]
		for _, d := range idx.Manifests {
			replaced := names[d.Annotations[AnnotationRefName]] ||
				(ownsPlatforms && refName != "" && d.Annotations[AnnotationPlatformOf] == refName)
			if !replaced {
				kept = append(kept, d)
			}
		}
		idx.Manifests = append(append(kept, desc), platforms...)
		return true, nil
	})
}

// WriteTarball writes img as a `docker load`-able tarball at path, tagged
// with tags (none: loaded untagged). The file appears whole or not at all.
func WriteTarball(path string, img v1.Image, tags []name.Tag) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".kiln-tar-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	refs := map[name.Reference]v1.Image{}
	for _, t := range tags {
		refs[t] = img
	}
	if len(refs) == 0 {
		if err := tarball.Write(nil, img, tmp); err != nil {
			tmp.Close()
			return fmt.Errorf("writing %s: %w", path, err)
		}
	} else if err := tarball.MultiRefWrite(refs, tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// PushOptions are the go-containerregistry options for pushing to repo:
// credentials from the keychain with push scope, this client's transport
// underneath and go-containerregistry's retries for uploads.
//
// Each call starts a new retry budget (see WithPushRetries): use one set of
// options for one push.
func (c *Client) PushOptions(ctx context.Context, repo name.Repository) []remote.Option {
	opts, _ := c.pushOptions(ctx, repo)
	return opts
}

func (c *Client) pushOptions(ctx context.Context, repo name.Repository) ([]remote.Option, *pushRetry) {
	pr := c.newPushRetry(ctx)
	return append([]remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(c.o.keychain),
		remote.WithTransport(c.transportFor(repo.Registry, Push)),
		remote.WithUserAgent(c.o.userAgent),
		remote.WithJobs(4),
	}, pr.options()...), pr
}

// Push uploads img (layers streamed, blobs the registry has skipped,
// cross-repository mounts where go-containerregistry can) to every ref:
// the first ref of each repository gets the upload, the others a tag.
// Every write is retried (see RetryableWrite); an error says which refs
// were pushed before it.
func (c *Client) Push(ctx context.Context, img v1.Image, refs []name.Reference) (v1.Hash, error) {
	h, err := img.Digest()
	if err != nil {
		return v1.Hash{}, err
	}
	pushed := map[string]bool{}
	var done []string
	for _, ref := range refs {
		ref = c.withAccess(ref, Push)
		repo := ref.Context()
		opts, pr := c.pushOptions(ctx, repo)
		if _, isTag := ref.(name.Tag); isTag && pushed[repo.Name()] {
			if err := remote.Tag(repo.Tag(ref.Identifier()), img, opts...); err != nil {
				return h, pr.failed("tagging "+ref.String(), done, err)
			}
			done = append(done, ref.String())
			continue
		}
		if err := remote.Write(ref, img, opts...); err != nil {
			return h, pr.failed("pushing "+ref.String(), done, err)
		}
		pushed[repo.Name()] = true
		done = append(done, ref.String())
	}
	return h, nil
}

// PushIndex uploads an index and its images to every ref.
func (c *Client) PushIndex(ctx context.Context, idx v1.ImageIndex, refs []name.Reference) (v1.Hash, error) {
	h, err := idx.Digest()
	if err != nil {
		return v1.Hash{}, err
	}
	var done []string
	for _, ref := range refs {
		ref = c.withAccess(ref, Push)
		opts, pr := c.pushOptions(ctx, ref.Context())
		if err := remote.WriteIndex(ref, idx, opts...); err != nil {
			return h, pr.failed("pushing "+ref.String(), done, err)
		}
		done = append(done, ref.String())
	}
	return h, nil
}

// PutImage stores img's layers, config and manifest without filing it in
// index.json: the caller files it (the layer cache does, under its own
// annotations).
func (l *Layout) PutImage(ctx context.Context, img v1.Image) (v1.Descriptor, error) {
	return l.putImage(ctx, img)
}

package buildall

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sync/errgroup"

	"kiln/builder/runner"
	"kiln/manifest"
	"kiln/platform"
)

// publishAll stitches and publishes each image whose required platforms
// all built, a bounded number at a time, and releases every outcome.
func (c *Coordinator) publishAll(ctx context.Context, plan *Plan, rep *Report, outs [][]*runner.Outcome) {
	var g errgroup.Group
	g.SetLimit(c.o.jobs)
	for i, ip := range plan.Images {
		res := &rep.Images[i]
		if res.Err != nil {
			releaseAll(outs[i : i+1])
			continue
		}
		g.Go(func() error {
			defer releaseAll(outs[i : i+1])
			res.Err = c.publish(ctx, ip.Image, res, outs[i])
			return nil
		})
	}
	_ = g.Wait()
}

// child is a built platform on its way into an index.
type child struct {
	entry  manifest.IndexEntry
	remote bool // the image is in the first tag's repository already
}

// publish makes the image's index and pushes it, writes it, or both.
func (c *Coordinator) publish(ctx context.Context, im Image, res *ImageResult, outs []*runner.Outcome) error {
	failed := platformsOf(res.Platforms, func(pr PlatformResult) bool { return pr.Required && pr.Status != StatusBuilt })
	if len(failed) > 0 {
		return fmt.Errorf("%w (%s): nothing pushed or written", ErrRequiredFailed, platform.FormatAll(failed))
	}
	children, err := c.children(ctx, im, res, outs)
	if err != nil {
		return err
	}
	idx, err := c.index(im, children)
	if err != nil {
		return err
	}
	if res.Index, err = idx.Digest(); err != nil {
		return err
	}
	res.MediaType, _ = idx.MediaType()
	var errs []error
	if im.Push {
		if err := c.push(ctx, im, children, res.Index); err != nil {
			errs = append(errs, err)
		} else {
			res.Pushed = true
		}
	}
	if im.OCIDir != "" {
		if err := c.write(ctx, im, idx); err != nil {
			errs = append(errs, err)
		} else {
			res.OCIDir, res.RefName = im.OCIDir, im.refName()
		}
	}
	return errors.Join(errs...)
}

// children are the built platforms as index entries, in the plan's order.
func (c *Coordinator) children(ctx context.Context, im Image, res *ImageResult, outs []*runner.Outcome) ([]child, error) {
	var out []child
	for j, pr := range res.Platforms {
		if pr.Status != StatusBuilt {
			continue
		}
		p := pr.Platform
		ch := child{entry: manifest.IndexEntry{Image: outs[j].Image, Platform: &p, Source: fmt.Sprintf("images.%s %s", im.Name, platform.Format(p))}}
		if ch.entry.Image == nil { // the runner left it in the registry, by digest
			if len(im.Tags) == 0 {
				return nil, fmt.Errorf("%s: the runner kept no image and there is no tag to find it under", ch.entry.Source)
			}
			img, err := c.remoteImage(ctx, im.Tags[0].Context().Digest(pr.Digest.String()))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", ch.entry.Source, err)
			}
			ch.entry.Image, ch.remote = img, true
		}
		out = append(out, ch)
	}
	return out, nil
}

func (c *Coordinator) index(im Image, children []child) (v1.ImageIndex, error) {
	entries := make([]manifest.IndexEntry, len(children))
	for i, ch := range children {
		entries[i] = ch.entry
	}
	idx, err := manifest.BuildIndex(entries, c.o.format, im.Annotations)
	if err != nil {
		return nil, fmt.Errorf("making the index: %w", err)
	}
	return idx, nil
}

// push puts every platform image by digest into the first tag's
// repository, then the index (made of those remote images, so that other
// repositories mount their blobs) under every tag.
func (c *Coordinator) push(ctx context.Context, im Image, children []child, want v1.Hash) error {
	if c.o.client == nil {
		return errors.New("no registry client to push with")
	}
	repo := im.Tags[0].Context()
	remotes := make([]child, len(children))
	for i, ch := range children {
		d, err := ch.entry.Image.Digest()
		if err != nil {
			return err
		}
		ref := repo.Digest(d.String())
		if !ch.remote {
			if _, err := c.o.client.Push(ctx, ch.entry.Image, []name.Reference{ref}); err != nil {
				return fmt.Errorf("pushing %s by digest: %w", ch.entry.Source, err)
			}
		}
		img, err := c.remoteImage(ctx, ref)
		if err != nil {
			return fmt.Errorf("%s: %w", ch.entry.Source, err)
		}
		remotes[i] = ch
		remotes[i].entry.Image, remotes[i].remote = img, true
	}
	idx, err := c.index(im, remotes)
	if err != nil {
		return err
	}
	if got, err := idx.Digest(); err != nil || got != want {
		return fmt.Errorf("the pushed platform images make index %s, not %s (err %v)", got, want, err)
	}
	c.o.log.Info("pushing index", "image", im.Name, "digest", want.String(), "tags", len(im.Tags))
	if _, err = c.o.client.PushIndex(ctx, idx, im.Tags); err != nil {
		// Every platform image is in the registry by digest: say how to
		// make the index again without building anything.
		cmd := "kiln index create"
		if c.o.format != manifest.FormatOCI {
			cmd += " --format " + string(c.o.format)
		}
		for _, k := range slices.Sorted(maps.Keys(im.Annotations)) {
			cmd += " --annotation '" + k + "=" + im.Annotations[k] + "'"
		}
		for _, t := range im.Tags {
			cmd += " --tag " + t.String()
		}
		for _, ch := range remotes {
			d, _ := ch.entry.Image.Digest()
			cmd += " " + repo.Digest(d.String()).String()
		}
		return fmt.Errorf("%w\n    every platform image is pushed by digest; to retry without building: %s", err, cmd)
	}
	return nil
}

// remoteImage is the image at ref, read lazily with the client's
// transport and credentials.
func (c *Coordinator) remoteImage(ctx context.Context, ref name.Digest) (v1.Image, error) {
	if c.o.client == nil {
		return nil, errors.New("no registry client to read the runner's image with")
	}
	opts, err := c.o.client.RemoteOptions(ctx, ref.Context())
	if err != nil {
		return nil, err
	}
	img, err := remote.Image(ref, opts...)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", ref, err)
	}
	return img, nil
}

// write files the index, with its images, in the image's OCI layout.
func (c *Coordinator) write(ctx context.Context, im Image, idx v1.ImageIndex) error {
	l, err := manifest.OpenLayout(im.OCIDir)
	if err != nil {
		return fmt.Errorf("oci:%s: %w", im.OCIDir, err)
	}
	if _, err := l.WriteIndex(ctx, idx, im.refName()); err != nil {
		return fmt.Errorf("writing oci:%s: %w", im.OCIDir, err)
	}
	return nil
}

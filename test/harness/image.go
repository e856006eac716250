package harness

import (
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"
)

// pushJobs bounds concurrent blob uploads per push.
const pushJobs = 4

// ImageSpec describes a deterministic single-platform image.
type ImageSpec struct {
	Platform string // "os/arch[/variant]"; empty means "linux/amd64"
	Layers   []LayerSpec
	Env      []string
}

// Image returns the OCI image described by spec: config os, architecture and
// variant from spec.Platform, the layers in order, no timestamps. The same
// spec always gives the same digest.
func Image(spec ImageSpec) (v1.Image, error) {
	plat, err := spec.platform()
	if err != nil {
		return nil, err
	}
	layers := make([]v1.Layer, len(spec.Layers))
	for i, ls := range spec.Layers {
		if layers[i], err = Layer(ls); err != nil {
			return nil, fmt.Errorf("image %s: %w", plat, err)
		}
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.ConfigFile(img, &v1.ConfigFile{
		OS:           plat.OS,
		Architecture: plat.Architecture,
		Variant:      plat.Variant,
		Config:       v1.Config{Env: spec.Env},
		RootFS:       v1.RootFS{Type: "layers"},
	})
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", plat, err)
	}
	return mutate.AppendLayers(img, layers...)
}

func (s ImageSpec) platform() (*v1.Platform, error) {
	if s.Platform == "" {
		return &v1.Platform{OS: "linux", Architecture: "amd64"}, nil
	}
	p, err := v1.ParsePlatform(s.Platform)
	if err != nil {
		return nil, fmt.Errorf("image platform %q: %w", s.Platform, err)
	}
	return p, nil
}

// index returns an OCI index of the images for specs, with each manifest
// descriptor carrying its platform, and the images themselves.
func index(specs []ImageSpec) (v1.ImageIndex, []v1.Image, error) {
	imgs, err := images(specs)
	if err != nil {
		return nil, nil, err
	}
	adds := make([]mutate.IndexAddendum, len(imgs))
	for i, img := range imgs {
		plat, _ := specs[i].platform() // already parsed by images
		adds[i] = mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: plat}}
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	return mutate.AppendManifests(idx, adds...), imgs, nil
}

// images builds the images for specs concurrently; building means hashing
// every layer.
func images(specs []ImageSpec) ([]v1.Image, error) {
	imgs := make([]v1.Image, len(specs))
	var g errgroup.Group
	g.SetLimit(pushJobs)
	for i, spec := range specs {
		g.Go(func() (err error) {
			imgs[i], err = Image(spec)
			return err
		})
	}
	return imgs, g.Wait()
}

// PushImage builds the image for spec and pushes it to ref over plain HTTP.
func PushImage(ctx context.Context, ref string, spec ImageSpec) (v1.Hash, error) {
	img, err := Image(spec)
	if err != nil {
		return v1.Hash{}, err
	}
	return pushImage(ctx, ref, img)
}

// PushIndex builds one image per spec and pushes them to ref as an OCI index
// over plain HTTP.
func PushIndex(ctx context.Context, ref string, specs []ImageSpec) (v1.Hash, error) {
	idx, _, err := index(specs)
	if err != nil {
		return v1.Hash{}, err
	}
	return pushIndex(ctx, ref, idx)
}

func pushImage(ctx context.Context, ref string, img v1.Image) (v1.Hash, error) {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("parsing %s: %w", ref, err)
	}
	if err := remote.Write(r, img, remoteOptions(ctx)...); err != nil {
		return v1.Hash{}, fmt.Errorf("pushing %s: %w", ref, err)
	}
	return img.Digest()
}

func pushIndex(ctx context.Context, ref string, idx v1.ImageIndex) (v1.Hash, error) {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("parsing %s: %w", ref, err)
	}
	if err := remote.WriteIndex(r, idx, remoteOptions(ctx)...); err != nil {
		return v1.Hash{}, fmt.Errorf("pushing index %s: %w", ref, err)
	}
	return idx.Digest()
}

func remoteOptions(ctx context.Context) []remote.Option {
	return []remote.Option{remote.WithContext(ctx), remote.WithJobs(pushJobs)}
}

package harness

import (
	"context"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"
)

// Fixture is an image or index pushed to a registry.
type Fixture struct {
	Ref       string   // "127.0.0.1:PORT/repo:tag"
	Platforms []string // in index order
	Digest    v1.Hash  // of the index, or of the manifest when !Multi
	// Bytes is the sum of the compressed layer and config sizes over all
	// platforms, each distinct blob counted once (what a warm cache pulls).
	// Manifests are not counted.
	Bytes int64
	Multi bool // Ref names an index
}

// fixtureSpec is what PushStandardFixtures pushes for one tag.
type fixtureSpec struct {
	repoTag string
	multi   bool
	images  []ImageSpec
}

const kib = 1 << 10

// standardFixtures is the standard set. sharedLayer appears in base/multi
// on both platforms and as the first layer of app/shares.
func standardFixtures() []fixtureSpec {
	shared := LayerSpec{Seed: 101, Size: 512 * kib, Files: 4}
	env := func(name string) []string {
		return []string{"PATH=/usr/local/bin:/usr/bin:/bin", "KILN_FIXTURE=" + name}
	}
	return []fixtureSpec{
		{"base/multi:1", true, []ImageSpec{
			{"linux/amd64", []LayerSpec{shared, {Seed: 102, Size: 768 * kib, Files: 3}}, env("base/multi")},
			{"linux/arm64", []LayerSpec{shared, {Seed: 103, Size: 768 * kib, Files: 3}}, env("base/multi")},
		}},
		{"base/single:1", false, []ImageSpec{
			{"linux/amd64", []LayerSpec{{Seed: 201, Size: 768 * kib, Files: 8}, {Seed: 202, Size: 256 * kib}}, env("base/single")},
		}},
		{"app/shares:1", true, []ImageSpec{
			{"linux/amd64", []LayerSpec{shared, {Seed: 301, Size: 128 * kib}}, env("app/shares")},
			{"linux/arm64", []LayerSpec{shared, {Seed: 302, Size: 128 * kib}}, env("app/shares")},
		}},
		{"base/arm:1", true, []ImageSpec{
			{"linux/arm/v7", []LayerSpec{{Seed: 401, Size: 256 * kib, Files: 2}}, env("base/arm")},
			{"linux/arm64", []LayerSpec{{Seed: 402, Size: 256 * kib, Files: 2}}, env("base/arm")},
		}},
	}
}

// PushStandardFixtures pushes the standard fixture set to the registry at
// addr ("127.0.0.1:PORT") and returns the fixtures in this order:
//
//	base/multi:1   index linux/amd64 + linux/arm64, 2 layers each, the first shared (~2 MB)
//	base/single:1  image linux/amd64, 2 layers (~1 MB)
//	app/shares:1   index linux/amd64 + linux/arm64, first layer = base/multi's shared layer
//	base/arm:1     index linux/arm/v7 + linux/arm64
func PushStandardFixtures(ctx context.Context, addr string) ([]Fixture, error) {
	specs := standardFixtures()
	out := make([]Fixture, len(specs))
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(len(specs))
	for i, fs := range specs {
		g.Go(func() (err error) {
			out[i], err = pushFixture(ctx, addr+"/"+fs.repoTag, fs.multi, fs.images)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

// PushLargeFixture pushes "addr/big/random:1": one linux/amd64 image with a
// single layer of sizeMB MiB of incompressible data (stored uncompressed in
// gzip above 50 MiB, for speed).
func PushLargeFixture(ctx context.Context, addr string, sizeMB int) (Fixture, error) {
	spec := ImageSpec{
		Platform: "linux/amd64",
		Layers:   []LayerSpec{{Seed: 9001, Size: int64(sizeMB) << 20}},
		Env:      []string{"KILN_FIXTURE=big/random"},
	}
	return pushFixture(ctx, addr+"/big/random:1", false, []ImageSpec{spec})
}

// pushFixture pushes specs to ref, as an index when multi, else as the one
// image specs[0].
func pushFixture(ctx context.Context, ref string, multi bool, specs []ImageSpec) (Fixture, error) {
	imgs, digest, err := pushSpecs(ctx, ref, multi, specs)
	if err != nil {
		return Fixture{}, fmt.Errorf("fixture %s: %w", ref, err)
	}
	f := Fixture{Ref: ref, Digest: digest, Multi: multi}
	for _, s := range specs {
		f.Platforms = append(f.Platforms, s.Platform)
	}
	f.Bytes, err = blobBytes(imgs)
	return f, err
}

func pushSpecs(ctx context.Context, ref string, multi bool, specs []ImageSpec) ([]v1.Image, v1.Hash, error) {
	if !multi {
		img, err := Image(specs[0])
		if err != nil {
			return nil, v1.Hash{}, err
		}
		h, err := pushImage(ctx, ref, img)
		return []v1.Image{img}, h, err
	}
	idx, imgs, err := index(specs)
	if err != nil {
		return nil, v1.Hash{}, err
	}
	h, err := pushIndex(ctx, ref, idx)
	return imgs, h, err
}

// blobBytes sums the sizes of the distinct config and layer blobs of imgs.
func blobBytes(imgs []v1.Image) (int64, error) {
	seen := map[v1.Hash]bool{}
	var total int64
	for _, img := range imgs {
		m, err := img.Manifest()
		if err != nil {
			return 0, err
		}
		for _, d := range append([]v1.Descriptor{m.Config}, m.Layers...) {
			if !seen[d.Digest] {
				seen[d.Digest] = true
				total += d.Size
			}
		}
	}
	return total, nil
}

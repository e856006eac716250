// Command seed starts a registry process for kiln's benchmarks, pushes the
// benchmark image set into it and keeps it serving until its standard input
// closes or it gets SIGTERM/SIGINT; then it stops the registry.
//
//	go run ./bench/seed -dir bench/.work/registry -ready bench/.work/seed.json -lists bench/.work/lists
//
// (under a shell, keep its standard input open, e.g. from a FIFO: a
// background job's is /dev/null, which would stop it at once; or pass
// -stdin=false and stop it with SIGTERM).
//
// Once everything is pushed it prints a JSON description (registry address,
// refs, platforms, every blob's URL path and size, total bytes) on standard
// output, writes the same JSON atomically to -ready (if given), and writes
// plain one-per-line lists to -lists (if given) for shell scripts:
//
//	multi.refs   refs of the 4×2 set          big.ref     the 220 MB image
//	multi.blobs  "SIZE PATH" of every distinct blob of the 4×2 set
//	small.refs   refs of the 20 small images
//
// Everything is deterministic (fixed seeds): the same flags always give the
// same digests, so runs on different days are comparable.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sync/errgroup"

	"kiln/bench/internal/seedrun"
	"kiln/test/harness"
)

const mib = 1 << 20

// Blob is one distinct blob: its URL path on the registry and its size.
type Blob struct {
	Path   string `json:"path"` // "/v2/REPO/blobs/sha256:..."
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
}

// Image is one pushed ref.
type Image struct {
	Ref       string   `json:"ref"`
	Digest    string   `json:"digest"`
	Platforms []string `json:"platforms"`
	Bytes     int64    `json:"bytes"` // distinct config+layer bytes of this ref
}

// Set is a group of refs measured together.
type Set struct {
	Images []Image `json:"images"`
	Blobs  []Blob  `json:"blobs"`       // distinct over the whole set
	Bytes  int64   `json:"total_bytes"` // sum of Blobs sizes
}

// Description is what seed prints.
type Description struct {
	Registry string  `json:"registry"`
	Multi    Set     `json:"multi"` // ≥ 4 images × linux/amd64+linux/arm64, ≥ 500 MB
	Big      Set     `json:"big"`   // one linux/amd64 image, one big layer
	Small    Set     `json:"small"` // 20 small 2-platform images
	PushSecs float64 `json:"push_seconds"`
}

func main() {
	dir := flag.String("dir", "bench/.work/registry", "registry folder (config and data)")
	ready := flag.String("ready", "", "write the JSON description here (atomically) once everything is pushed")
	lists := flag.String("lists", "", "write plain-text lists for shell scripts into this folder")
	bigMB := flag.Int("big-mb", 220, "size of the big image's one layer, MiB")
	watchStdin := flag.Bool("stdin", true, "stop when standard input closes")
	logPath := flag.String("log", "", "append the registry's log here (default: standard error)")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("seed: ")

	seedrun.Serve(*dir, *logPath, *watchStdin, func(ctx context.Context, addr string) error {
		return run(ctx, addr, *bigMB, *ready, *lists)
	})
}

func run(ctx context.Context, addr string, bigMB int, ready, lists string) error {
	start := time.Now()
	d := Description{Registry: addr}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) { d.Multi, err = pushMulti(gctx, addr); return })
	g.Go(func() (err error) { d.Small, err = pushSmall(gctx, addr); return })
	g.Go(func() error {
		f, err := harness.PushLargeFixture(gctx, addr, bigMB)
		if err != nil {
			return err
		}
		d.Big, err = describe(gctx, []string{f.Ref})
		return err
	})
	if err := g.Wait(); err != nil {
		return err
	}
	d.PushSecs = time.Since(start).Seconds()
	if err := seedrun.Publish(d, ready, lists, listFiles(d)); err != nil {
		return err
	}
	log.Printf("ready: %s, pushed %d + %d + %d MiB in %.1fs", addr,
		d.Multi.Bytes/mib, d.Big.Bytes/mib, d.Small.Bytes/mib, d.PushSecs)
	return nil
}

// pushMulti pushes the 4×2 set. Every manifest has
//
//	noarch  8 MiB in 16 files, shared by all 8 manifests
//	base    96 MiB, one per platform, shared by the 4 images of that platform
//	app     40 MiB, its own
//	conf    2 MiB in 8 files, its own
//
// so the distinct bytes are 8 + 2×96 + 8×(40+2) = 536 MiB (562 MB) of
// incompressible data, while the sum over manifests is 8×146 = 1168 MiB: a
// tool that did not share blobs would move more than twice as much.
func pushMulti(ctx context.Context, addr string) (Set, error) {
	const images = 4
	plats := []string{"linux/amd64", "linux/arm64"}
	noarch := harness.LayerSpec{Seed: 100, Size: 8 * mib, Files: 16}
	base := map[string]harness.LayerSpec{
		"linux/amd64": {Seed: 101, Size: 96 * mib, Files: 1},
		"linux/arm64": {Seed: 102, Size: 96 * mib, Files: 1},
	}
	refs := make([]string, images)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(2)
	for i := range images {
		refs[i] = fmt.Sprintf("%s/bench/multi-%d:1", addr, i+1)
		var specs []harness.ImageSpec
		for p, plat := range plats {
			seed := int64(1000 + 10*(i+1) + 2*p)
			specs = append(specs, harness.ImageSpec{
				Platform: plat,
				Layers: []harness.LayerSpec{
					base[plat], noarch,
					{Seed: seed, Size: 40 * mib, Files: 1},
					{Seed: seed + 1, Size: 2 * mib, Files: 8},
				},
				Env: []string{"KILN_BENCH=multi-" + fmt.Sprint(i+1)},
			})
		}
		g.Go(func() error {
			_, err := harness.PushIndex(gctx, refs[i], specs)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return Set{}, err
	}
	return describe(ctx, refs)
}

// pushSmall pushes 20 images of two platforms, ~1 MiB each in all: a
// 128 KiB base layer per platform shared by all 20, and a 384 KiB layer of
// their own per platform.
func pushSmall(ctx context.Context, addr string) (Set, error) {
	const images = 20
	plats := []string{"linux/amd64", "linux/arm64"}
	base := map[string]harness.LayerSpec{
		"linux/amd64": {Seed: 5001, Size: 128 << 10, Files: 2},
		"linux/arm64": {Seed: 5002, Size: 128 << 10, Files: 2},
	}
	refs := make([]string, images)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for i := range images {
		refs[i] = fmt.Sprintf("%s/bench/small-%02d:1", addr, i+1)
		var specs []harness.ImageSpec
		for p, plat := range plats {
			specs = append(specs, harness.ImageSpec{
				Platform: plat,
				Layers: []harness.LayerSpec{
					base[plat],
					{Seed: int64(6000 + 10*(i+1) + p), Size: 384 << 10, Files: 3},
				},
				Env: []string{"KILN_BENCH=small-" + fmt.Sprint(i+1)},
			})
		}
		g.Go(func() error {
			_, err := harness.PushIndex(gctx, refs[i], specs)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return Set{}, err
	}
	return describe(ctx, refs)
}

// describe reads refs back from the registry (manifests only) and lists
// their platforms and distinct blobs, each blob under the first repo that
// references it.
func describe(ctx context.Context, refs []string) (Set, error) {
	var s Set
	seen := map[v1.Hash]bool{}
	for _, ref := range refs {
		r, err := name.ParseReference(ref, name.Insecure)
		if err != nil {
			return Set{}, err
		}
		desc, err := remote.Get(r, remote.WithContext(ctx))
		if err != nil {
			return Set{}, fmt.Errorf("reading back %s: %w", ref, err)
		}
		img := Image{Ref: ref, Digest: desc.Digest.String()}
		var imgs []v1.Image
		if desc.MediaType.IsIndex() {
			idx, err := desc.ImageIndex()
			if err != nil {
				return Set{}, err
			}
			im, err := idx.IndexManifest()
			if err != nil {
				return Set{}, err
			}
			for _, m := range im.Manifests {
				if m.Platform != nil {
					img.Platforms = append(img.Platforms, m.Platform.String())
				}
				child, err := idx.Image(m.Digest)
				if err != nil {
					return Set{}, err
				}
				imgs = append(imgs, child)
			}
		} else {
			child, err := desc.Image()
			if err != nil {
				return Set{}, err
			}
			cf, err := child.ConfigFile()
			if err != nil {
				return Set{}, err
			}
			img.Platforms = []string{cf.Platform().String()}
			imgs = append(imgs, child)
		}
		own := map[v1.Hash]bool{}
		repo := r.Context().RepositoryStr()
		for _, child := range imgs {
			m, err := child.Manifest()
			if err != nil {
				return Set{}, err
			}
			for _, d := range append([]v1.Descriptor{m.Config}, m.Layers...) {
				if !own[d.Digest] {
					own[d.Digest] = true
					img.Bytes += d.Size
				}
				if seen[d.Digest] {
					continue
				}
				seen[d.Digest] = true
				s.Blobs = append(s.Blobs, Blob{
					Path:   "/v2/" + repo + "/blobs/" + d.Digest.String(),
					Digest: d.Digest.String(),
					Size:   d.Size,
				})
				s.Bytes += d.Size
			}
		}
		s.Images = append(s.Images, img)
	}
	// Largest first, so a parallel fetch of the list does not end on a big one.
	sort.SliceStable(s.Blobs, func(i, j int) bool { return s.Blobs[i].Size > s.Blobs[j].Size })
	return s, nil
}

func listFiles(d Description) map[string]string {
	refs := func(s Set) string {
		var b strings.Builder
		for _, im := range s.Images {
			b.WriteString(im.Ref + "\n")
		}
		return b.String()
	}
	blobs := func(s Set) string {
		var b strings.Builder
		for _, bl := range s.Blobs {
			fmt.Fprintf(&b, "%d %s\n", bl.Size, bl.Path)
		}
		return b.String()
	}
	files := map[string]string{
		"registry":    d.Registry + "\n",
		"multi.refs":  refs(d.Multi),
		"multi.blobs": blobs(d.Multi),
		"multi.bytes": fmt.Sprintln(d.Multi.Bytes),
		"big.ref":     refs(d.Big),
		"big.blobs":   blobs(d.Big),
		"big.bytes":   fmt.Sprintln(d.Big.Bytes),
		"small.refs":  refs(d.Small),
		"small.bytes": fmt.Sprintln(d.Small.Bytes),
	}
	return files
}

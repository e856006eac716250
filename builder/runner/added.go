package runner

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	specs "github.com/opencontainers/image-spec/specs-go/v1"

	"kiln/builder"
	"kiln/builder/archcheck"
	"kiln/builder/dockerfile"
	"kiln/platform"
)

// recordingBases remembers the images a build was given, so that the
// layers the build added can be told from its base image's.
type recordingBases struct {
	inner builder.BaseImages

	mu   sync.Mutex
	seen map[string]v1.Image // key: reference and platform
}

var _ builder.BaseImages = (*recordingBases)(nil)

func newRecordingBases(inner builder.BaseImages) *recordingBases {
	if inner == nil {
		return nil
	}
	return &recordingBases{inner: inner, seen: map[string]v1.Image{}}
}

func (r *recordingBases) Image(ctx context.Context, ref name.Reference, p specs.Platform) (v1.Image, error) {
	img, err := r.inner.Image(ctx, ref, p)
	if err == nil {
		r.mu.Lock()
		r.seen[baseKey(ref, p)] = img
		r.mu.Unlock()
	}
	return img, err
}

// Offline passes on the inner BaseImages' answer, so that builder.Build
// refuses an offline build exactly when it would without the wrapper.
func (r *recordingBases) Offline() bool {
	o, ok := r.inner.(builder.OfflineReporter)
	return !ok || o.Offline()
}

func baseKey(ref name.Reference, p specs.Platform) string {
	return ref.String() + " " + platform.Format(p)
}

// baseOf is the image the target's filesystem starts from (following FROM
// <stage>), as the build received it; nil for scratch or when unknown.
func (r *recordingBases) baseOf(plan *dockerfile.Plan) v1.Image {
	i := plan.Target
	for range plan.Stages {
		if plan.Stages[i].BaseStage < 0 {
			break
		}
		i = plan.Stages[i].BaseStage
	}
	st := plan.Stages[i]
	if r == nil || strings.EqualFold(st.Base, "scratch") {
		return nil
	}
	ref, err := name.ParseReference(st.Base)
	if err != nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen[baseKey(ref, st.Platform)]
}

// checkAdded runs archcheck on the layers img has beyond base's: what the
// build added. A mismatch is an *archcheck.MismatchError naming the paths.
func (l *Local) checkAdded(ctx context.Context, img, base v1.Image, req builder.Request, log *slog.Logger) error {
	added, err := addedLayers(img, base)
	if err != nil {
		return err
	}
	rep, err := archcheck.CheckImageLayers(ctx, added, req.Platform, l.o.arch)
	if err != nil {
		return fmt.Errorf("checking the binaries the build added: %w", err)
	}
	log.Debug("architecture check", "layers", len(added), "checked", rep.Checked, "skipped", rep.Skipped, "not_elf", rep.NotELF)
	if err := rep.Err(); err != nil {
		return err
	}
	return l.sampleBase(ctx, img, len(added), req, log)
}

// baseSample is how many candidate files of each base layer the check
// reads: enough to catch a base whose config names the platform while its
// programs are another's, cheap next to the unpack.
const baseSample = 64

// sampleBase checks a sample of the executables of the layers img does not
// add (its base's): a config can say arm64 over x86-64 files. It fails when
// most of the sample is foreign; skipped when the user allowed a base of
// another platform.
func (l *Local) sampleBase(ctx context.Context, img v1.Image, added int, req builder.Request, log *slog.Logger) error {
	if req.AllowPlatformMismatch {
		return nil
	}
	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("reading the built image's layers: %w", err)
	}
	base := layers[:len(layers)-added]
	if len(base) == 0 {
		return nil
	}
	opts := l.o.arch
	opts.Max = baseSample
	rep, err := archcheck.CheckImageLayers(ctx, base, req.Platform, opts)
	if err != nil {
		return fmt.Errorf("checking a sample of the base image's binaries: %w", err)
	}
	log.Debug("architecture check of the base", "layers", len(base), "checked", rep.Checked, "skipped", rep.Skipped, "foreign", len(rep.Findings))
	// A stray foreign program in a base (an emulator, firmware) is the
	// base's business; most of them foreign means its config lies.
	if rep.Checked >= 3 && 2*len(rep.Findings) > rep.Checked {
		return fmt.Errorf("the base image's own programs are not for %s, though its config says so (%d of %d sampled): %w",
			platform.Format(req.Platform), len(rep.Findings), rep.Checked, rep.Err())
	}
	return nil
}

// addedLayers returns img's layers past base's, when img starts with
// base's layers; otherwise (no base, or a base it does not start with)
// every layer.
func addedLayers(img, base v1.Image) ([]v1.Layer, error) {
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("reading the built image's layers: %w", err)
	}
	if base == nil {
		return layers, nil
	}
	bm, err := base.Manifest()
	if err != nil {
		return nil, fmt.Errorf("reading the base image's manifest: %w", err)
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, fmt.Errorf("reading the built image's manifest: %w", err)
	}
	if len(bm.Layers) > len(m.Layers) {
		return layers, nil
	}
	for i, d := range bm.Layers {
		if m.Layers[i].Digest != d.Digest {
			return layers, nil
		}
	}
	return layers[len(bm.Layers):], nil
}

package builder

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	"github.com/moby/buildkit/util/suggest"
	specs "github.com/opencontainers/image-spec/specs-go/v1"

	"kiln/builder/buildcontext"
	"kiln/builder/dockerfile"
	"kiln/builder/layerstore"
	"kiln/builder/rootfs"
	"kiln/manifest"
	"kiln/platform"
)

// errStageCycle is wrapped when ONBUILD triggers of a base image make a stage
// need itself.
var errStageCycle = errors.New("stage needs itself")

// builder is one Build: the plan, the context and the stages built so far.
type builder struct {
	runState runEnvironment // isolation and snapshot strategy, chosen at the first RUN

	// Container isolation: the paths replacing "/" keeps, kiln's folder,
	// and the stage whose filesystem "/" is.
	protected     []string
	containerHome string
	// containerMountsNoted: the log has said how container isolation
	// handles RUN --mount.
	containerMountsNoted bool
	onSlash              *stageState
	req                  Request
	o                    *options
	plan                 *dockerfile.Plan
	bc                   *buildcontext.Context
	work                 string
	lex                  *shell.Lex
	created              time.Time  // config and history timestamps
	epoch                *time.Time // file timestamps of a reproducible build

	stages   []*stageState
	building []bool
	mounts   []string               // stage filesystems mounted from the layer store
	images   map[string]*stageState // COPY --from=<image>, unpacked once
	roots    []string
	pending  sync.WaitGroup // layers written behind the build (stackChange)
	// mismatches: bases used for another platform than theirs
	// (Request.AllowPlatformMismatch).
	mismatches []string
	layers     int
	runsLeft   int // RUN instructions of the plan not dispatched yet (ONBUILD ones aside)

	line       int          // the Dockerfile line being dispatched
	step       *stepTracker // the step running, for RUN output
	cacheSteps []CacheStep  // layer cache outcomes, in order
}

func newBuilder(req Request, o *options, plan *dockerfile.Plan, bc *buildcontext.Context, work string) *builder {
	b := &builder{
		req: req, o: o, plan: plan, bc: bc, work: work,
		lex:      shell.NewLex(plan.Escape),
		created:  o.now().UTC().Truncate(time.Second),
		stages:   make([]*stageState, len(plan.Stages)),
		building: make([]bool, len(plan.Stages)),
		images:   map[string]*stageState{},
	}
	for _, st := range plan.Stages {
		for _, cmd := range st.Commands {
			if _, ok := cmd.(*instructions.RunCommand); ok {
				b.runsLeft++
			}
		}
	}
	if req.Reproducible {
		e := time.Unix(0, 0).UTC()
		if req.SourceDateEpoch != nil {
			e = req.SourceDateEpoch.UTC()
		}
		b.created, b.epoch = e, &e
	}
	return b
}

// cleanup waits for the layers written behind, ends the RUN init started
// ahead and removes the stage filesystems; layer files stay for the result.
func (b *builder) cleanup() {
	b.pending.Wait() // they read folders removed below
	if b.runState.runner != nil {
		b.runState.runner.Close()
	}
	for _, m := range b.mounts {
		if err := layerstore.Unmount(m); err != nil {
			b.o.log.Warn("unmounting a stage filesystem", "err", err)
		}
	}
	for _, dir := range b.roots {
		_ = os.RemoveAll(dir)
	}
}

// stage builds stage i once, building first the stages it needs.
func (b *builder) stage(ctx context.Context, i int) (*stageState, error) {
	if s := b.stages[i]; s != nil {
		return s, nil
	}
	ps := b.plan.Stages[i]
	if b.building[i] {
		return nil, b.plan.Errorf(ps.Line, "FROM", fmt.Errorf("%w (through ONBUILD triggers)", errStageCycle))
	}
	b.building[i] = true
	// A stage built inside another's step (COPY --from, RUN --mount=from)
	// must leave that step's line and display as they were.
	defer func(line int, step *stepTracker) { b.line, b.step = line, step }(b.line, b.step)
	if err := b.canRun(ps); err != nil {
		return nil, err
	}
	b.o.log.Info("building stage", "stage", stageLabel(ps), "from", ps.Base, "platform", platform.Format(ps.Platform))
	from := b.beginStep(ps, 1, ps.Line, "FROM "+ps.Base)
	s, err := b.from(ctx, ps)
	from.end(err)
	if err != nil {
		return nil, err
	}
	if err := b.dispatchAll(ctx, s, ps); err != nil {
		return nil, err
	}
	b.stages[i] = s
	return s, nil
}

// dispatchAll runs the base image's ONBUILD triggers, then the stage's own
// instructions.
func (b *builder) dispatchAll(ctx context.Context, s *stageState, ps dockerfile.Stage) error {
	triggers := s.cfg.Config.OnBuild
	s.cfg.Config.OnBuild = nil
	for _, expr := range triggers {
		cmd, err := dockerfile.ParseTrigger(expr)
		if err != nil {
			return b.plan.Errorf(ps.Line, "ONBUILD", fmt.Errorf("trigger %q of %s: %w", expr, ps.Base, err))
		}
		t := b.beginStep(ps, 1, ps.Line, "ONBUILD "+expr)
		err = b.dispatchStep(ctx, s, cmd, ps.Line, t)
		if err != nil {
			return err
		}
	}
	for i, cmd := range ps.Commands {
		if err := ctx.Err(); err != nil {
			return err
		}
		t := b.beginStep(ps, i+2, dockerfile.Line(cmd), stepText(cmd))
		if err := b.dispatchStep(ctx, s, cmd, dockerfile.Line(cmd), t); err != nil {
			return err
		}
	}
	return nil
}

// from starts a stage on its FROM: scratch, an earlier stage or an image.
func (b *builder) from(ctx context.Context, ps dockerfile.Stage) (*stageState, error) {
	switch {
	case ps.BaseStage >= 0:
		parent, err := b.stage(ctx, ps.BaseStage)
		if err != nil {
			return nil, err
		}
		img, err := parent.image()
		if err != nil {
			return nil, err
		}
		s, err := b.newStage(stageLabel(ps), ps.Platform, img)
		if err != nil {
			return nil, err
		}
		// A stage built on a stage keeps the ARGs in scope there (BuildKit).
		s.key = parent.key
		s.vars = parent.vars.clone()
		s.buildArgs = slices.Clone(parent.buildArgs)
		// It also takes over the parent's unpacked filesystem, which holds
		// exactly the parent's image: no second unpack. Should a later
		// instruction read the parent's files, they unpack again from its
		// layers.
		if parent.root != nil {
			s.root, parent.root = parent.root, nil
			for p, o := range parent.owners {
				s.owners[p] = o
			}
			if b.onSlash == parent { // container isolation: "/" is the child's now
				b.onSlash = s
			}
		}
		return s, nil
	case strings.EqualFold(ps.Base, "scratch"):
		s, err := b.newStage(stageLabel(ps), ps.Platform, scratchImage(ps.Platform))
		if err == nil {
			s.key, err = stateKey(s.base, s, true)
		}
		return s, err
	}
	img, err := b.pull(ctx, ps.Base, ps.Platform)
	if err != nil {
		if ps.Index > 0 {
			err = b.stageHint(ps.Base, err)
		}
		return nil, b.plan.Errorf(ps.Line, "FROM", err)
	}
	s, err := b.newStage(stageLabel(ps), ps.Platform, img)
	if err == nil {
		s.key, err = stateKey(img, s, false)
	}
	return s, err
}

// stageHint explains the failed pull of an image a --from, or the FROM of
// a later stage, names with a bare name: as in BuildKit, a name that is no
// stage is an image, and the registry's answer alone (a DNS failure for
// docker.io, an unknown repository) hides a misspelt stage name. The
// closest stage name is suggested as BuildKit suggests names
// (util/suggest).
func (b *builder) stageHint(name string, err error) error {
	if errors.Is(err, ErrPlatformMismatch) || strings.ContainsAny(name, ":/@") {
		return err // an image that exists, or a reference no stage could be
	}
	var names []string
	for _, st := range b.plan.Stages {
		if st.Name != "" {
			names = append(names, st.Name)
		}
	}
	if match, ok := suggest.Search(name, names, false); ok {
		return fmt.Errorf("no stage named %s; did you mean %s? (or an image: %w)", name, match, err)
	}
	return fmt.Errorf("no stage named %s (or an image: %w)", name, err)
}

// pull gets an external image from the BaseImages.
func (b *builder) pull(ctx context.Context, ref string, p specs.Platform) (v1.Image, error) {
	if b.o.bases == nil {
		return nil, fmt.Errorf("image %s: %w", ref, ErrNoBaseImages)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("invalid image reference %q: %w", ref, err)
	}
	img, err := b.o.bases.Image(ctx, r, p)
	if err != nil {
		return nil, fmt.Errorf("base image %s for %s: %w", ref, platform.Format(p), err)
	}
	// Every base is checked before use and as its layers are read: a
	// registry or cache volume someone can write to must not feed a build.
	img, err = manifest.VerifiedImage(img, fmt.Sprintf("base image %s for %s", ref, platform.Format(p)))
	if err != nil {
		return nil, err
	}
	if err := b.checkBasePlatform(ref, img, p); err != nil {
		return nil, err
	}
	if b.o.keepBaseBlobs {
		manifest.KeepBlobs(ctx, img, b.work)
	}
	return img, nil
}

// checkBasePlatform refuses a base whose config names another platform
// than the stage's (see basePlatform), unless the request allows it, then
// noted for the result.
func (b *builder) checkBasePlatform(ref string, img v1.Image, want specs.Platform) error {
	have, err := basePlatform(ref, img, want)
	switch {
	case err == nil && !platform.Equal(have, want):
		b.o.log.Info("using a compatible variant of the base", "image", ref, "platform", platform.Format(have), "stage_platform", platform.Format(want))
	case errors.Is(err, ErrPlatformMismatch) && b.req.AllowPlatformMismatch:
		b.o.log.Warn("building on a base of another platform (--allow-platform-mismatch)", "image", ref, "platform", describePlatform(have), "stage_platform", platform.Format(want))
		b.mismatches = append(b.mismatches, fmt.Sprintf("%s is %s, not %s", ref, describePlatform(have), platform.Format(want)))
		return nil
	}
	return err
}

// basePlatform is the platform img's config names, and an error wrapping
// ErrPlatformMismatch when that cannot serve want: an amd64-only image
// under FROM for arm64 would make an image that says arm64 and holds
// x86-64 files. A compatible variant (arm/v6 for arm/v7) serves.
func basePlatform(ref string, img v1.Image, want specs.Platform) (specs.Platform, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return specs.Platform{}, fmt.Errorf("base image %s: reading its config: %w", ref, err)
	}
	have := platform.Normalize(specs.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant})
	if platform.Serves(have, want) {
		return have, nil
	}
	return have, fmt.Errorf("%w: %s is %s, not %s (use an image or index that has %s, or --allow-platform-mismatch to build on it anyway)",
		ErrPlatformMismatch, ref, describePlatform(have), platform.Format(want), platform.Format(want))
}

// CheckBase looks ref up in bases for p, as a build would, and says whether
// it can serve p: an error wrapping platform.ErrNoMatch when an index has
// no image for p, ErrPlatformMismatch when the image is for another
// platform (nil if allowMismatch), or the lookup's own error.
func CheckBase(ctx context.Context, bases BaseImages, ref string, p specs.Platform, allowMismatch bool) error {
	r, err := name.ParseReference(ref)
	if err != nil {
		return fmt.Errorf("invalid image reference %q: %w", ref, err)
	}
	img, err := bases.Image(ctx, r, p)
	if err != nil {
		return fmt.Errorf("base image %s for %s: %w", ref, platform.Format(p), err)
	}
	_, err = basePlatform(ref, img, p)
	if errors.Is(err, ErrPlatformMismatch) && allowMismatch {
		return nil
	}
	return err
}

func describePlatform(p specs.Platform) string {
	if p.OS == "" || p.Architecture == "" {
		return "for no platform (its config names none)"
	}
	return "for " + platform.Format(p)
}

// newStage makes the state of a stage built on img.
func (b *builder) newStage(stageName string, p specs.Platform, img v1.Image) (*stageState, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading the config of the base of stage %s: %w", stageName, err)
	}
	mt, err := img.MediaType()
	if err != nil {
		return nil, fmt.Errorf("reading the manifest of the base of stage %s: %w", stageName, err)
	}
	cfg := cf.DeepCopy()
	return &stageState{
		name: stageName, platform: p, base: img, cfg: cfg,
		vars: newVars(cfg.Config.Env), layerType: layerMediaType(mt),
		owners: map[string]rootfs.Owner{},
	}, nil
}

// scratchImage is the empty image for p, with BuildKit's default PATH.
func scratchImage(p specs.Platform) v1.Image {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cfg := &v1.ConfigFile{
		OS: p.OS, Architecture: p.Architecture, Variant: p.Variant,
		RootFS: v1.RootFS{Type: "layers"},
		Config: v1.Config{Env: []string{"PATH=" + defaultPath}},
	}
	out, err := mutate.ConfigFile(img, cfg)
	if err != nil {
		panic(err) // mutate.ConfigFile fails only on a broken base; empty.Image is not
	}
	return out
}

// defaultPath is the PATH BuildKit gives a stage built from scratch.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// layerMediaType picks the layer type that matches the base's manifest.
func layerMediaType(mt types.MediaType) types.MediaType {
	if mt == types.DockerManifestSchema2 {
		return types.DockerLayer
	}
	return types.OCILayer
}

func stageLabel(ps dockerfile.Stage) string {
	if ps.Name != "" {
		return ps.Name
	}
	return fmt.Sprint(ps.Index)
}

// ensureRoot unpacks the stage's image so far into a rootfs tree, once.
func (b *builder) ensureRoot(ctx context.Context, s *stageState) (*rootfs.Root, error) {
	if s.root != nil {
		return s.root, nil
	}
	dir, err := os.MkdirTemp(b.work, "rootfs-")
	if err != nil {
		return nil, fmt.Errorf("making a stage filesystem: %w", err)
	}
	// An image's root folder is 0755; MkdirTemp's 0700 must not leak into
	// COPY --from=stage / (its mode is copied).
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	b.roots = append(b.roots, dir)
	root, err := rootfs.Open(dir)
	if err != nil {
		return nil, err
	}
	img, err := s.image()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if b.useLayerStore() {
		ok, err := b.mountStored(ctx, s, img, dir)
		if err != nil {
			return nil, err
		}
		if ok {
			if root, err = rootfs.Open(dir); err != nil { // the mount, not the folder under it
				return nil, err
			}
			s.root = root
			s.index = nil
			return root, nil
		}
	}
	stats, err := b.unpackImage(ctx, root, img, s.name)
	if err != nil {
		return nil, fmt.Errorf("unpacking the filesystem of stage %s: %w", s.name, err)
	}
	b.o.log.Info("unpacked the stage's filesystem", "stage", s.name, "entries", stats.Entries, "bytes", stats.Bytes,
		"seconds", roundSeconds(time.Since(start)))
	s.noteOwners(stats)
	for _, w := range stats.Warnings {
		b.o.log.Debug("unpacking", "stage", s.name, "warning", w)
	}
	s.root = root
	s.index = nil // the root answers from now on, and RUN layers skip the index
	return root, nil
}

// layerPath names the next layer file.
func (b *builder) layerPath() string {
	b.layers++
	return filepath.Join(b.work, fmt.Sprintf("layer-%03d.tar.gz", b.layers))
}

// dispatchError gives err the Dockerfile line, unless it has one.
func (b *builder) dispatchError(line int, cmd instructions.Command, err error) error {
	var derr *dockerfile.Error
	if errors.As(err, &derr) {
		return err
	}
	return b.plan.Errorf(line, strings.ToUpper(cmd.Name()), err)
}

// roundSeconds is d in seconds with millisecond precision, for log lines.
func roundSeconds(d time.Duration) float64 {
	return math.Round(float64(d)/float64(time.Millisecond)) / 1000 // 1.132, not 1.1320000000000001
}

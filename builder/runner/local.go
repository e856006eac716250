package runner

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"kiln/builder"
	"kiln/builder/archcheck"
	"kiln/manifest"
	"kiln/platform"
)

// Local builds in this process with builder.Build, each job in a work
// folder of its own, on this machine's architecture: foreign platforms only
// when Decide says so.
type Local struct {
	o localOptions
}

var _ Runner = (*Local)(nil)

// LocalOption configures a Local.
type LocalOption func(*localOptions)

type localOptions struct {
	bases   builder.BaseImages
	workDir string
	log     *slog.Logger
	emu     Emulation
	client  *manifest.Client
	arch    archcheck.Options
	build   []builder.Option
}

// WithBaseImages sets where FROM images come from (builder.WithBaseImages).
func WithBaseImages(b builder.BaseImages) LocalOption {
	return func(o *localOptions) { o.bases = b }
}

// WithWorkDir sets the folder jobs make their work folders in (default
// os.TempDir()).
func WithWorkDir(dir string) LocalOption {
	return func(o *localOptions) {
		if dir != "" {
			o.workDir = dir
		}
	}
}

// WithLogger sets the logger for jobs without a Log writer (default:
// discard).
func WithLogger(l *slog.Logger) LocalOption {
	return func(o *localOptions) {
		if l != nil {
			o.log = l
		}
	}
}

// WithAllowEmulation lets a RUN execute another architecture's code under
// a registered binfmt_misc emulator (default false: such a job fails before
// it starts).
func WithAllowEmulation(allow bool) LocalOption {
	return func(o *localOptions) { o.emu.Allow = allow }
}

// WithBinfmtDir sets where binfmt_misc is mounted (default
// DefaultBinfmtDir); tests pass a folder of their own.
func WithBinfmtDir(dir string) LocalOption {
	return func(o *localOptions) { o.emu.BinfmtDir = dir }
}

// WithClient makes Run push each built image by digest into the
// repository of the job's first tag (default: nothing is pushed).
func WithClient(c *manifest.Client) LocalOption {
	return func(o *localOptions) { o.client = c }
}

// WithArchCheck tunes the check of the binaries a build added (default:
// archcheck's defaults).
func WithArchCheck(opts archcheck.Options) LocalOption {
	return func(o *localOptions) { o.arch = opts }
}

// WithBuildOptions adds options to every build (RUN isolation, snapshot
// strategy, secrets, the RUN cache folder).
func WithBuildOptions(opts ...builder.Option) LocalOption {
	return func(o *localOptions) { o.build = append(o.build, opts...) }
}

// NewLocal makes a local runner.
func NewLocal(opts ...LocalOption) *Local {
	o := localOptions{workDir: os.TempDir(), log: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(&o)
	}
	return &Local{o: o}
}

// Name is "local".
func (l *Local) Name() string { return "local" }

// Run builds job here: it reads the Dockerfile, refuses a job that would
// execute foreign code (Decide), builds, checks the binaries the build
// added (archcheck) and, with a client, pushes the image by digest. The
// Outcome's layer files stay in the job's work folder until Close.
func (l *Local) Run(ctx context.Context, job Job) (*Outcome, error) {
	req := job.Request
	if job.Platform.Architecture != "" {
		req.Platform = job.Platform
	}
	req.Platform, req.BuildPlatform = orHost(req.Platform), orHost(req.BuildPlatform)
	job.Platform = req.Platform
	work, err := os.MkdirTemp(l.o.workDir, "kiln-job-"+jobSlug(job)+"-")
	if err != nil {
		return nil, fmt.Errorf("making the work folder: %w", err)
	}
	out, err := l.run(ctx, job, req, work)
	if err != nil {
		_ = os.RemoveAll(work)
		return nil, err
	}
	return out, nil
}

func (l *Local) run(ctx context.Context, job Job, req builder.Request, work string) (*Outcome, error) {
	log := l.jobLogger(job)
	data, file, err := ReadDockerfile(ctx, req, work)
	if err != nil {
		return nil, err
	}
	plan, err := PlanFor(data, file, req)
	if err != nil {
		return nil, err
	}
	ex, err := Decide(req.BuildPlatform, req.Platform, plan, l.o.emu)
	if err != nil {
		return nil, err
	}
	if ex.Mode == Emulated {
		log.Warn("emulating", "handlers", ex.Handlers, "run", ex.Site.Where())
	}
	bases := newRecordingBases(l.o.bases)
	opts := append(append([]builder.Option(nil), l.o.build...), builder.WithLogger(log), builder.WithWorkDir(work))
	if job.Progress != nil {
		opts = append(opts, builder.WithProgress(job.Progress))
	}
	if bases != nil {
		opts = append(opts, builder.WithBaseImages(bases))
	}
	if ex.Mode == Emulated {
		opts = append(opts, builder.WithAllowEmulation(true))
	}
	res, err := builder.Build(ctx, req, opts...)
	if err != nil {
		return nil, err
	}
	if err := l.checkAdded(ctx, res.Image, bases.baseOf(plan), req, log); err != nil {
		res.Close()
		return nil, err
	}
	if err := l.push(ctx, job, res); err != nil {
		res.Close()
		return nil, err
	}
	size := imageSize(res.Image)
	log.Debug("built", "digest", res.Digest.String(), "size", size)
	hits, misses := res.CacheHits()
	return &Outcome{
		Digest: res.Digest, Image: res.Image, Where: l.Name(), Size: size, Emulated: ex.Mode == Emulated,
		CacheHits: hits, CacheMisses: misses,
		Release: func() error {
			res.Close() // the build's folder, and its lock, go last: the layers are read until now
			return os.RemoveAll(work)
		},
	}, nil
}

// jobLogger logs to job.Log as text lines, else to the runner's logger.
func (l *Local) jobLogger(job Job) *slog.Logger {
	if job.Log == nil {
		return l.o.log.With("image", job.Image, "platform", platform.Format(job.Platform))
	}
	return slog.New(slog.NewTextHandler(job.Log, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{} // the coordinator's prefix says whose line it is; time adds noise
			}
			return a
		},
	}))
}

// push uploads the image by digest into the first tag's repository.
func (l *Local) push(ctx context.Context, job Job, res *builder.Result) error {
	if l.o.client == nil || len(job.Tags) == 0 {
		return nil
	}
	ref := job.Tags[0].Context().Digest(res.Digest.String())
	if _, err := l.o.client.Push(ctx, res.Image, []name.Reference{ref}); err != nil {
		return fmt.Errorf("pushing %s by digest: %w", platform.Format(job.Platform), err)
	}
	return nil
}

// imageSize is the config's and layers' compressed size.
func imageSize(img v1.Image) int64 {
	m, err := img.Manifest()
	if err != nil {
		return 0
	}
	n := m.Config.Size
	for _, l := range m.Layers {
		n += l.Size
	}
	return n
}

// jobSlug names a job's work folder: "api-linux-arm64".
func jobSlug(job Job) string {
	s := job.Image + "-" + platform.Format(job.Platform)
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_' {
			return r
		}
		return '-'
	}, s)
}

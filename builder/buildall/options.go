package buildall

import (
	"io"
	"log/slog"
	"time"

	specs "github.com/opencontainers/image-spec/specs-go/v1"

	"kiln/builder"
	"kiln/builder/runner"
	"kiln/manifest"
	"kiln/platform"
)

// DefaultJobs is how many platform builds run at once unless WithJobs says.
const DefaultJobs = 2

// Coordinator plans and runs multi-platform builds through one Runner.
type Coordinator struct {
	runner runner.Runner
	o      options
}

// Option configures a Coordinator.
type Option func(*options)

type options struct {
	host          specs.Platform
	emu           runner.Emulation
	jobs          int
	log           *slog.Logger
	logw          io.Writer
	progress      func(image string, p specs.Platform) func(builder.StepEvent)
	client        *manifest.Client
	format        manifest.IndexFormat
	tempDir       string
	now           func() time.Time
	bases         builder.BaseImages // nil: bases are first looked at by the builds
	allowMismatch bool
}

// New makes a Coordinator that builds through r.
func New(r runner.Runner, opts ...Option) *Coordinator {
	o := options{
		host:   platform.Host(),
		jobs:   DefaultJobs,
		log:    slog.New(slog.DiscardHandler),
		format: manifest.FormatOCI,
		now:    time.Now,
	}
	for _, opt := range opts {
		opt(&o)
	}
	return &Coordinator{runner: r, o: o}
}

// WithBaseImages lets the plan look up every external base of every
// platform before any work: a base that has no image for the platform, or
// whose config names another platform, blocks that target up front (and in
// --plan) unless allowMismatch is set for the second case.
func WithBaseImages(b builder.BaseImages, allowMismatch bool) Option {
	return func(o *options) { o.bases, o.allowMismatch = b, allowMismatch }
}

// WithHost sets the platform of the machine that builds (default
// platform.Host()): what executes natively, and $BUILDPLATFORM.
func WithHost(p specs.Platform) Option {
	return func(o *options) { o.host = platform.Normalize(p) }
}

// WithAllowEmulation lets a platform whose stages run foreign code build
// under a registered binfmt_misc emulator (default false: such a platform
// fails before any work).
func WithAllowEmulation(allow bool) Option {
	return func(o *options) { o.emu.Allow = allow }
}

// WithBinfmtDir sets where binfmt_misc is mounted (default
// runner.DefaultBinfmtDir).
func WithBinfmtDir(dir string) Option {
	return func(o *options) { o.emu.BinfmtDir = dir }
}

// WithJobs bounds how many platform builds run at once (default
// DefaultJobs; less than 1 means 1).
func WithJobs(n int) Option {
	return func(o *options) { o.jobs = max(n, 1) }
}

// WithLogger sets the logger for the coordinator's own progress (default:
// discard).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.log = l
		}
	}
}

// WithLogWriter sends each job's log lines to w, prefixed with
// "[name platform] " (default: none; the runner logs as it would alone).
func WithLogWriter(w io.Writer) Option {
	return func(o *options) { o.logw = w }
}

// WithProgress gives each job a function its steps are sent to as they
// run (a display), made by fn for the job's image and platform.
func WithProgress(fn func(image string, p specs.Platform) func(builder.StepEvent)) Option {
	return func(o *options) { o.progress = fn }
}

// WithClient sets the registry client indexes are pushed with; without
// one, an image that asks to be pushed fails.
func WithClient(c *manifest.Client) Option {
	return func(o *options) { o.client = c }
}

// WithFormat sets the index format (default manifest.FormatOCI).
func WithFormat(f manifest.IndexFormat) Option {
	return func(o *options) { o.format = f }
}

// WithTempDir sets where tar and git contexts are unpacked while planning
// reads their Dockerfiles (default os.TempDir()).
func WithTempDir(dir string) Option {
	return func(o *options) { o.tempDir = dir }
}

// withClock sets the clock build times are measured with (tests).
func withClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

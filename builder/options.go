package builder

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/klauspost/compress/gzip"

	"kiln/builder/layercache"
	"kiln/builder/layerstore"
	"kiln/builder/run"
)

// Option configures Build.
type Option func(*options)

type options struct {
	bases   BaseImages
	log     *slog.Logger
	workDir string
	stdin   io.Reader
	http    *http.Client
	now     func() time.Time

	isolation      run.Isolation     // "" = run.Detect
	snapshot       string            // SnapshotAuto, SnapshotOverlay, SnapshotWalk
	runCache       string            // RUN --mount=type=cache folders live here
	secrets        map[string]Secret // RUN --mount=type=secret sources, by id
	runOutput      io.Writer         // nil: each output line is logged
	runExclude     []string          // container paths no RUN snapshot takes
	allowEmulation bool
	force          bool     // container isolation outside a detected container
	keep           []string // host paths container isolation must not remove
	security       run.Security
	cache          *layercache.Cache // nil: no layer cache
	progress       func(StepEvent)   // nil: the log only
	layers         *layerstore.Store // nil: stages are unpacked
	gzipLevel      int               // the layers' gzip level; gzip.DefaultCompression unless set
	keepBaseBlobs  bool              // manifest.KeepBlobs on every base
}

func newOptions(opts []Option) *options {
	o := &options{
		log:     slog.New(slog.DiscardHandler),
		workDir: os.TempDir(),
		stdin:   os.Stdin,
		http:    http.DefaultClient,
		now:     time.Now,

		gzipLevel: gzip.DefaultCompression,
	}
	for _, opt := range opts {
		opt(o)
	}
	return o
}

// WithBaseImages sets where FROM and COPY --from images come from. Without
// it only scratch and stages can be built upon.
func WithBaseImages(b BaseImages) Option { return func(o *options) { o.bases = b } }

// WithLogger sets the logger for progress and warnings (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.log = l
		}
	}
}

// WithWorkDir sets the scratch folder for stage filesystems, layer files and
// materialised contexts (default os.TempDir()). The caller owns it; Build
// works in a new folder inside it, which Result.Close removes.
func WithWorkDir(dir string) Option {
	return func(o *options) {
		if dir != "" {
			o.workDir = dir
		}
	}
}

// WithStdin sets what the context "-" reads (default os.Stdin).
func WithStdin(r io.Reader) Option { return func(o *options) { o.stdin = r } }

// WithHTTPClient sets the client ADD <url> and an https:// tarball context
// are fetched with (default http.DefaultClient).
func WithHTTPClient(c *http.Client) Option {
	return func(o *options) {
		if c != nil {
			o.http = c
		}
	}
}

// withClock sets the clock of non-reproducible builds (tests).
func withClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithIsolation sets how RUN steps are isolated from the host (default: the
// first RUN calls run.Detect and logs what it chose and why).
func WithIsolation(iso run.Isolation) Option { return func(o *options) { o.isolation = iso } }

// WithSnapshot sets how a RUN step's change is found: SnapshotOverlay,
// SnapshotWalk or SnapshotAuto (the default: overlay where this process may
// mount one, else walk).
func WithSnapshot(strategy string) Option { return func(o *options) { o.snapshot = strategy } }

// WithRunCache sets the folder RUN --mount=type=cache folders are kept in,
// across builds. Without it such a mount is an error.
func WithRunCache(dir string) Option { return func(o *options) { o.runCache = dir } }

// WithSecrets sets the sources of RUN --mount=type=secret, by id. Secret
// values never reach a layer, the history or a log line.
func WithSecrets(s map[string]Secret) Option { return func(o *options) { o.secrets = s } }

// WithRunOutput sends RUN steps' output to w instead of logging each line.
func WithRunOutput(w io.Writer) Option { return func(o *options) { o.runOutput = w } }

// WithRunExclude adds container paths RUN snapshots never take (a folder
// bind-mounted into every step by the caller).
func WithRunExclude(paths ...string) Option {
	return func(o *options) { o.runExclude = append(o.runExclude, paths...) }
}

// WithAllowEmulation lets RUN execute code of another architecture, through
// a binfmt_misc handler the caller has checked is registered.
func WithAllowEmulation(allow bool) Option { return func(o *options) { o.allowEmulation = allow } }

// WithSecurity sets how RUN steps are confined in chroot and rootless
// isolation (seccomp, masked paths, process and resource limits); the
// default is Docker's. Container isolation leaves this to the runtime.
func WithSecurity(sec run.Security) Option { return func(o *options) { o.security = sec } }

// WithForce lets container isolation run where no container was detected,
// or on a "/" holding files kiln cannot tell are disposable. The stage
// filesystem replaces "/": only for a machine or container that may lose it.
func WithForce(force bool) Option { return func(o *options) { o.force = force } }

// WithKeep names host folders container isolation must keep when it
// replaces "/" (the warm cache, output folders); mount points, kiln's own
// binary folder, the work folder and the build context are kept anyway.
func WithKeep(paths ...string) Option {
	return func(o *options) { o.keep = append(o.keep, paths...) }
}

// WithCompressionLevel sets the gzip level of the layers the build writes,
// from gzip.HuffmanOnly (-2) and gzip.NoCompression (0) to
// gzip.BestCompression (9); -1 is the default. Layers from the layer cache
// keep the level they were made with.
func WithCompressionLevel(level int) Option { return func(o *options) { o.gzipLevel = level } }

// newGzip compresses a layer at the level asked for.
func (o *options) newGzip(w io.Writer) (*gzip.Writer, error) {
	gz, err := gzip.NewWriterLevel(w, o.gzipLevel)
	if err != nil {
		return nil, fmt.Errorf("layer compression level %d: %w", o.gzipLevel, err)
	}
	return gz, nil
}

// WithKeepBaseBlobs tells Build that the image will be written to an OCI
// layout or a tarball once it returns: each base's layers then keep a copy
// of their blobs checked in this process (manifest.KeepBlobs; a registry's
// in the work folder, so the Result must not be closed before), and
// writing them neither fetches a blob again nor hashes a cached one at the
// end. A build that only pushes has no use for it.
func WithKeepBaseBlobs(keep bool) Option { return func(o *options) { o.keepBaseBlobs = keep } }

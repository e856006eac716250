package builder

import (
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"
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
}

func newOptions(opts []Option) *options {
	o := &options{
		log:     slog.New(slog.DiscardHandler),
		workDir: os.TempDir(),
		stdin:   os.Stdin,
		http:    http.DefaultClient,
		now:     time.Now,
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

// WithHTTPClient sets the client ADD <url> fetches with (default
// http.DefaultClient).
func WithHTTPClient(c *http.Client) Option {
	return func(o *options) {
		if c != nil {
			o.http = c
		}
	}
}

// withClock sets the clock of non-reproducible builds (tests).
func withClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

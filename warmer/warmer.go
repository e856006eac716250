// Package warmer fills and maintains kiln's base-image cache: an OCI image
// layout shared by every build on a node or cluster. It pulls each requested
// (image, platform) once, shares blobs between images and platforms, survives
// kill -9 and concurrent runs, revalidates tags that may have moved, prunes
// what nothing uses, and verifies what it holds.
//
//	w, err := warmer.New("/var/cache/kiln", warmer.WithJobs(8), warmer.WithRefresh(24*time.Hour))
//	rep, err := w.Warm(ctx, []warmer.Item{{Ref: "busybox:1.36", Platform: platform.MustParse("linux/arm64")}})
//	pr, err := w.Prune(ctx, []string{"busybox:1.36"})
//	vr, err := w.Verify(ctx)
package warmer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	specs "github.com/opencontainers/image-spec/specs-go/v1"

	"kiln/manifest"
)

// Item is one thing to have in the cache: an image reference for a platform.
type Item struct {
	Ref      string
	Platform specs.Platform
}

// Warmer works on one cache folder.
type Warmer struct {
	dir string
	o   options
}

type options struct {
	jobs     int
	refresh  bool
	maxAge   time.Duration
	grace    time.Duration // prune's grace period
	layerTTL time.Duration // layer cache entries older than this are pruned
	client   *manifest.Client
	log      *slog.Logger
	progress func(Event)
	now      func() time.Time
}

// Option configures a Warmer.
type Option func(*options) error

// WithJobs bounds parallel downloads (default 8).
func WithJobs(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("jobs must be at least 1, got %d", n)
		}
		o.jobs = n
		return nil
	}
}

// WithRefresh makes Warm revalidate cached tags not confirmed for maxAge,
// with one HEAD each, and pull those that moved. Younger entries cost no
// network. Digest references never need revalidating.
func WithRefresh(maxAge time.Duration) Option {
	return func(o *options) error {
		if maxAge < 0 {
			return fmt.Errorf("max age must not be negative, got %s", maxAge)
		}
		o.refresh, o.maxAge = true, maxAge
		return nil
	}
}

// WithPruneGrace makes Prune keep, for d after an entry left index.json
// (dropped by a prune, or replaced by a warm because its tag moved), every
// blob that entry reached. It protects builds that read the cache without
// its lock (see Prune); set it longer than the longest build. 0, the
// default, deletes them at once: builds that hold the lock are protected by
// it.
func WithPruneGrace(d time.Duration) Option {
	return func(o *options) error {
		if d < 0 {
			return fmt.Errorf("prune grace period must not be negative, got %s", d)
		}
		o.grace = d
		return nil
	}
}

// DefaultLayerCacheTTL is how long Prune keeps layer cache entries by
// default: two weeks, as the layer cache serves them (kaniko's --cache-ttl).
const DefaultLayerCacheTTL = 14 * 24 * time.Hour

// WithLayerCacheTTL makes Prune drop layer cache entries (kiln build
// --cache with the local store) stored more than d ago, and keep the
// younger ones whatever the configuration says.
func WithLayerCacheTTL(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("layer cache TTL must be positive, got %s", d)
		}
		o.layerTTL = d
		return nil
	}
}

// WithClient sets the registry client (default: manifest.NewClient()).
func WithClient(c *manifest.Client) Option {
	return func(o *options) error { o.client = c; return nil }
}

// WithLogger receives structured progress lines (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error { o.log = l; return nil }
}

// WithProgress receives events for a live display. It is called from many
// goroutines and must not block.
func WithProgress(fn func(Event)) Option {
	return func(o *options) error { o.progress = fn; return nil }
}

// WithClock replaces time.Now (tests).
func WithClock(now func() time.Time) Option {
	return func(o *options) error { o.now = now; return nil }
}

// New returns a Warmer for the cache at dir. The folder is created on first use.
func New(dir string, opts ...Option) (*Warmer, error) {
	if dir == "" {
		return nil, fmt.Errorf("cache dir: not set")
	}
	o := options{jobs: 8, log: slog.New(slog.DiscardHandler), now: time.Now, layerTTL: DefaultLayerCacheTTL}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if o.client == nil {
		c, err := manifest.NewClient()
		if err != nil {
			return nil, err
		}
		o.client = c
	}
	return &Warmer{dir: dir, o: o}, nil
}

// Dir is the cache folder.
func (w *Warmer) Dir() string { return w.dir }

// openShared opens the cache and takes its shared "in use" lock, which
// keeps prune from deleting blobs until unlock is called. writeErr is nil
// if this process may write to the cache, else an *manifest.AccessError
// saying why not: a warm that finds everything in the cache needs no write
// access, and only then may it go on without the lock.
func (w *Warmer) openShared(ctx context.Context) (l *manifest.Layout, unlock func() error, writeErr error, err error) {
	l, err = manifest.OpenLayout(w.dir, manifest.WithLayoutClock(w.o.now), manifest.WithRetiredEntries())
	if err != nil {
		return nil, nil, nil, fmt.Errorf("opening cache: %w", err)
	}
	writeErr = l.CheckWritable()
	unlock, err = l.LockShared(ctx)
	if errors.Is(err, manifest.ErrLockUnavailable) && writeErr != nil {
		w.o.log.Warn("reading the cache without its lock", "cache", l.Dir(), "why", err.Error())
		return l, func() error { return nil }, writeErr, nil
	}
	if err != nil {
		return nil, nil, nil, err
	}
	return l, unlock, writeErr, nil
}

func (w *Warmer) emit(e Event) {
	if w.o.progress != nil {
		w.o.progress(e)
	}
}

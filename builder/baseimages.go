package builder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	specs "github.com/opencontainers/image-spec/specs-go/v1"

	"kiln/manifest"
	"kiln/platform"
)

// BaseImages gives the builder the images FROM and COPY --from name, for a
// platform. Implementations: CacheThenRemote; tests pass their own.
type BaseImages interface {
	Image(ctx context.Context, ref name.Reference, p specs.Platform) (v1.Image, error)
}

// OfflineReporter is the optional capability of a BaseImages that can say
// whether it ever reaches a registry. Build refuses an offline Request with
// one that does.
type OfflineReporter interface {
	Offline() bool
}

// CachedBases reads base images from the warm cache, holding its shared lock
// from the first read until Close, and pulls what the cache lacks unless
// offline. The lock needs no write access; a cache whose lock cannot be
// taken at all (a read-only mount without a lock file) is read without it,
// and the build's log says so once.
type CachedBases struct {
	layout  *manifest.Layout
	client  *manifest.Client
	offline bool

	mu     sync.Mutex
	unlock func() error
	log    *slog.Logger
	// notice, until it is logged: why the cache is read without its lock.
	notice error
}

// logUser is a BaseImages that has something to tell the build's log
// (CachedBases: that it reads the cache without its lock). Build hands it
// its logger.
type logUser interface {
	useLogger(*slog.Logger)
}

var _ logUser = (*CachedBases)(nil)

// useLogger receives the build's logger (Build hands it over). A notice
// from before, when the cache was read first by a planner that has no
// logger, is logged now.
func (c *CachedBases) useLogger(l *slog.Logger) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.log == nil {
		c.log = l
	}
	c.flushNotice()
}

// flushNotice logs the pending notice if there is a logger. c.mu is held.
func (c *CachedBases) flushNotice() {
	if c.notice == nil || c.log == nil {
		return
	}
	c.log.Warn("reading the cache without its lock: a prune meanwhile may delete blobs this build reads, "+
		"unless it runs with --prune-grace longer than the build (or a read-write kiln warm creates the lock file first)",
		"cache", c.layout.Dir(), "why", c.notice.Error())
	c.notice = nil
}

var (
	_ BaseImages      = (*CachedBases)(nil)
	_ OfflineReporter = (*CachedBases)(nil)
)

// CacheThenRemote returns BaseImages that look in layout (which may be nil:
// no cache) and then, unless offline, in the registry through client. Images
// from the cache read their layers lazily: Close it only once the built image
// has been written or pushed.
func CacheThenRemote(layout *manifest.Layout, client *manifest.Client, offline bool) *CachedBases {
	return &CachedBases{layout: layout, client: client, offline: offline}
}

// Offline reports whether a cache miss is an error rather than a pull.
func (c *CachedBases) Offline() bool { return c.offline || c.client == nil }

// Image returns ref for platform p: from the cache if it holds it, else
// from the registry.
func (c *CachedBases) Image(ctx context.Context, ref name.Reference, p specs.Platform) (v1.Image, error) {
	img, err := c.cached(ctx, ref, p)
	if err == nil || !errors.Is(err, manifest.ErrNotCached) {
		return img, err
	}
	if c.Offline() {
		return nil, ErrOffline
	}
	return c.remote(ctx, ref, p)
}

// cached looks ref up in the cache, taking the shared lock first.
func (c *CachedBases) cached(ctx context.Context, ref name.Reference, p specs.Platform) (v1.Image, error) {
	if c.layout == nil {
		return nil, manifest.ErrNotCached
	}
	if err := c.lock(ctx); err != nil {
		return nil, err
	}
	img, _, err := c.layout.Image(ref, p)
	if err != nil {
		return nil, err
	}
	return manifest.VerifiedImage(img, fmt.Sprintf("%s for %s in the cache %s (kiln warm --verify --repair lists and removes damaged blobs; the next kiln warm fetches them again)",
		ref, platform.Format(p), c.layout.Dir()))
}

func (c *CachedBases) lock(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.unlock != nil {
		return nil
	}
	unlock, err := c.layout.LockShared(ctx)
	if errors.Is(err, manifest.ErrLockUnavailable) {
		c.unlock = func() error { return nil }
		c.notice = err
		c.flushNotice()
		return nil
	}
	if err != nil {
		return fmt.Errorf("locking the cache %s: %w", c.layout.Dir(), err)
	}
	c.unlock = unlock
	return nil
}

// remote pulls ref's manifest and picks p out of an index.
func (c *CachedBases) remote(ctx context.Context, ref name.Reference, p specs.Platform) (v1.Image, error) {
	ref, err := c.client.ParseReference(ref.String()) // the registry's insecure setting
	if err != nil {
		return nil, err
	}
	desc, _, err := c.client.Get(ctx, ref)
	if err != nil {
		return nil, err
	}
	if !desc.MediaType.IsIndex() {
		return desc.Image()
	}
	idx, err := desc.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("reading the index of %s: %w", ref, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("reading the index of %s: %w", ref, err)
	}
	d, err := platform.Select(p, im.Manifests)
	if err != nil {
		return nil, fmt.Errorf("%s for %s: %w", ref, platform.Format(p), err)
	}
	return idx.Image(d.Digest)
}

// Close releases the cache's shared lock, if it was taken.
func (c *CachedBases) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.unlock == nil {
		return nil
	}
	err := c.unlock()
	c.unlock = nil
	return err
}

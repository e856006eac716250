package layercache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"kiln/manifest"
)

// Options say what a Cache caches and for how long.
type Options struct {
	TTL time.Duration // entries older than this are misses; DefaultTTL if 0
	// NoCopyLayers and NoRunLayers leave COPY/ADD or RUN steps out
	// (kaniko's --cache-copy-layers=false, --cache-run-layers=false).
	NoCopyLayers bool
	NoRunLayers  bool
	// ReadOnly looks entries up but stores none.
	ReadOnly bool
	Log      *slog.Logger
	Now      func() time.Time
}

// Cache is what a build talks to: one or more stores (looked up in order;
// a hit in a later store is also filed in the earlier ones), the TTL, and
// stores made in the background while the build goes on. It is safe for
// concurrent use.
type Cache struct {
	stores []Store
	o      Options

	wg       sync.WaitGroup
	sem      chan struct{}
	mu       sync.Mutex
	failed   map[int]bool // stores that failed: no more puts (or gets) this build
	warned   map[string]bool
	pending  int
	putErrs  int
	putsDone int
}

// New is a cache over stores.
func New(stores []Store, o Options) *Cache {
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Cache{stores: stores, o: o, sem: make(chan struct{}, 2), failed: map[int]bool{}, warned: map[string]bool{}}
}

// String names the stores, for the plan and the log.
func (c *Cache) String() string {
	var names []string
	for _, s := range c.stores {
		names = append(names, s.String())
	}
	return strings.Join(names, ", ")
}

// TTL is how long entries serve.
func (c *Cache) TTL() time.Duration { return c.o.TTL }

// CachesCopy and CachesRun say which steps have entries.
func (c *Cache) CachesCopy() bool { return c != nil && !c.o.NoCopyLayers }
func (c *Cache) CachesRun() bool  { return c != nil && !c.o.NoRunLayers }

// Get looks key up in each store in order. A store that cannot be read is
// a warning and a miss (and is not asked again this build); an expired or
// damaged entry is a miss.
func (c *Cache) Get(ctx context.Context, key Key) (*Entry, bool) {
	for i, s := range c.stores {
		if c.isFailed(i) {
			continue
		}
		e, err := s.Get(ctx, key)
		switch {
		case err == nil && c.o.Now().Sub(e.Created) > c.o.TTL:
			c.o.Log.Debug("layer cache entry expired", "key", key.Short(), "store", s.String(), "created", e.Created.Format(time.RFC3339))
			continue
		case err == nil:
			for j := range i { // fill the stores before it (local from registry)
				c.put(j, key, e)
			}
			return e, true
		case errors.Is(err, ErrMiss):
			if err != ErrMiss {
				c.o.Log.Warn("layer cache entry unusable: a miss", "key", key.Short(), "store", s.String(), "err", manifest.Describe(err))
			}
		case ctx.Err() != nil:
			return nil, false
		default:
			c.fail(i, "reading the layer cache failed: every step will miss there", err)
		}
	}
	return nil, false
}

// Put files e under key in every store, in the background: the build never
// waits for it (but Wait does) and never fails because of it.
func (c *Cache) Put(key Key, e *Entry) {
	if c.o.ReadOnly {
		return
	}
	for i := range c.stores {
		c.put(i, key, e)
	}
}

func (c *Cache) put(i int, key Key, e *Entry) {
	if c.o.ReadOnly || c.isFailed(i) {
		return
	}
	c.mu.Lock()
	c.pending++
	c.mu.Unlock()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.sem <- struct{}{}
		defer func() { <-c.sem }()
		if c.isFailed(i) {
			return
		}
		// Not the build's context: an entry being stored when the build
		// ends is finished (Wait), and a cancelled build stops at Wait's
		// deadline.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		start := time.Now()
		err := c.stores[i].Put(ctx, key, e)
		c.mu.Lock()
		c.pending--
		if err != nil {
			c.putErrs++
		} else {
			c.putsDone++
		}
		c.mu.Unlock()
		if err != nil {
			c.fail(i, "storing in the layer cache failed: later steps are not stored there", err)
			return
		}
		c.o.Log.Debug("layer cache entry stored", "key", key.Short(), "store", c.stores[i].String(), "seconds", time.Since(start).Round(time.Millisecond).Seconds())
	}()
}

// Wait waits for the entries being stored, at most until ctx ends.
func (c *Cache) Wait(ctx context.Context) {
	done := make(chan struct{})
	go func() { c.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		c.mu.Lock()
		n := c.pending
		c.mu.Unlock()
		c.o.Log.Warn("not waiting for layer cache entries still being stored", "entries", n)
	}
}

// Stored is how many entries were stored and how many failed.
func (c *Cache) Stored() (ok, failed int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.putsDone, c.putErrs
}

func (c *Cache) isFailed(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.failed[i]
}

// fail warns once that store i failed and stops using it.
func (c *Cache) fail(i int, msg string, err error) {
	c.mu.Lock()
	first := !c.failed[i]
	c.failed[i] = true
	c.mu.Unlock()
	if first {
		c.o.Log.Warn(msg, "store", c.stores[i].String(), "err", manifest.Describe(err))
	}
}

// Close releases what the stores hold (the local store's lock).
func (c *Cache) Close() error {
	var errs []error
	for _, s := range c.stores {
		if cl, ok := s.(interface{ Close() error }); ok {
			errs = append(errs, cl.Close())
		}
	}
	return errors.Join(errs...)
}

// Describe is a one-line description for --plan.
func (c *Cache) Describe() string {
	what := "RUN, COPY and ADD"
	switch {
	case c.o.NoCopyLayers && c.o.NoRunLayers:
		what = "no steps"
	case c.o.NoCopyLayers:
		what = "RUN"
	case c.o.NoRunLayers:
		what = "COPY and ADD"
	}
	return fmt.Sprintf("%s (%s steps, ttl %s)", c.String(), what, c.o.TTL)
}

package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/urfave/cli/v2"

	"kiln/builder"
	"kiln/builder/layercache"
	"kiln/builder/runner/kube"
	"kiln/config"
	"kiln/manifest"
)

// layerCacheFlags are kaniko's layer cache flags, with kaniko's names and
// meanings, and --cache-local for the store in the warm cache folder.
func layerCacheFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "cache", Usage: "reuse the layers of steps whose inputs did not change (the layer cache; kaniko's --cache; as cache.layers = true in build.toml)", EnvVars: envs("CACHE")},
		&cli.StringFlag{Name: "cache-repo", Usage: "keep layer cache entries in this registry `REPOSITORY`, or in an OCI layout with oci:DIR (kaniko's --cache-repo; default: DESTINATION's repository + /cache when pushing, else the --cache-dir folder; \"\" for the folder only)", EnvVars: envs("CACHE_REPO")},
		&cli.BoolFlag{Name: "cache-local", Usage: "also keep layer cache entries in the --cache-dir folder when a --cache-repo is used (looked up first)", EnvVars: envs("CACHE_LOCAL")},
		&cli.DurationFlag{Name: "cache-ttl", Value: layercache.DefaultTTL, Usage: "layer cache entries older than this are not used (kaniko's --cache-ttl)", EnvVars: envs("CACHE_TTL")},
		&cli.BoolFlag{Name: "cache-copy-layers", Value: true, Usage: "cache COPY and ADD steps too (kaniko's flag; on by default in kiln: its COPY keys hash the copied files, so a hit is never stale)", EnvVars: envs("CACHE_COPY_LAYERS")},
		&cli.BoolFlag{Name: "cache-run-layers", Value: true, Usage: "cache RUN steps (kaniko's flag)", EnvVars: envs("CACHE_RUN_LAYERS")},
	}
}

// layerCachePlan is what build.toml and the flags say of the layer cache.
type layerCachePlan struct {
	on       bool
	repo     string // "" with no registry store
	local    bool   // a store in the cache folder
	localDir string // the local store's folder when not the cache folder (--cache-repo oci:DIR)
	noPush   bool   // the registry store is only read (kaniko's --no-push-cache)
	ttl      time.Duration
	noCopy   bool
	noRun    bool
}

// fromConfig takes build.toml's cache.layers*.
func (p *layerCachePlan) fromConfig(c config.Cache) {
	p.on, p.repo, p.ttl = c.Layers, c.LayersRepo, c.LayersTTL
}

// applyFlags lays the flags over build.toml and picks the stores: the
// repository given, else (kaniko's rule) the first destination's
// repository + "/cache" when the build pushes, else the cache folder.
func (p *layerCachePlan) applyFlags(c *cli.Context, dests []name.Reference, push bool) error {
	if c.IsSet("cache") {
		p.on = c.Bool("cache")
	}
	if c.IsSet("cache-repo") {
		p.repo = c.String("cache-repo")
		p.on = p.on || (!c.IsSet("cache") && p.repo != "")
	}
	if c.IsSet("cache-ttl") || p.ttl == 0 {
		p.ttl = c.Duration("cache-ttl")
	}
	if p.ttl <= 0 {
		return fmt.Errorf("--cache-ttl %s: must be positive", p.ttl)
	}
	p.noCopy = !c.Bool("cache-copy-layers")
	p.noRun = !c.Bool("cache-run-layers")
	p.noPush = c.Bool("no-push-cache")
	if !p.on {
		return nil
	}
	if dir, ok := strings.CutPrefix(p.repo, "oci:"); ok {
		// kaniko's --cache-repo oci:DIR: the entries in a layout there.
		if dir == "" {
			return fmt.Errorf("--cache-repo oci:: want oci:DIR")
		}
		p.repo, p.localDir, p.local = "", dir, true
		return nil
	}
	switch {
	case p.repo != "":
		if _, err := name.NewRepository(p.repo); err != nil {
			return fmt.Errorf("--cache-repo %q: %w", p.repo, err)
		}
	case c.IsSet("cache-repo"):
		// --cache-repo "": the folder only, even when pushing.
	case push && len(dests) > 0:
		p.repo = dests[0].Context().Name() + "/cache"
	}
	p.local = p.repo == "" || c.Bool("cache-local")
	return nil
}

// kube is the layer cache of the Kubernetes runner's pods: always a
// registry (the repository given, else each image's + "/cache").
func (p *layerCachePlan) kube() kube.LayerCache {
	return kube.LayerCache{On: p.on, Repo: p.repo, TTL: p.ttl, NoCopyLayers: p.noCopy, NoRunLayers: p.noRun}
}

// describe is the plan's line: which stores, for which runner.
func (p *layerCachePlan) describe(runnerKind string, lc *layercache.Cache) string {
	switch {
	case !p.on:
		return "off (--cache or cache.layers = true turns it on)"
	case runnerKind == "kubernetes" && p.repo == "":
		return fmt.Sprintf("registry REPOSITORY/cache of each image's first tag, in every Job (ttl %s)", p.ttl)
	case runnerKind == "kubernetes":
		return fmt.Sprintf("registry %s, in every Job (ttl %s)", p.repo, p.ttl)
	case lc == nil:
		return "on, but no store could be opened (see the log)"
	}
	return lc.Describe()
}

// open makes the cache: nil when it is off. A local store that cannot be
// opened is a warning, never a failed build.
func (p *layerCachePlan) open(client *manifest.Client, cacheDir string, log *slog.Logger) *layercache.Cache {
	if !p.on {
		return nil
	}
	var stores []layercache.Store
	if p.localDir != "" {
		cacheDir = p.localDir
	}
	if p.local {
		if l, err := manifest.OpenLayout(cacheDir); err != nil {
			log.Warn("the layer cache's local store cannot be opened: not used", "dir", cacheDir, "err", err)
		} else {
			stores = append(stores, layercache.NewLocal(l))
		}
	}
	if p.repo != "" {
		repo, err := name.NewRepository(p.repo)
		if err == nil && p.noPush {
			stores = append(stores, readOnlyStore{layercache.NewRegistry(client, repo)})
		} else if err == nil {
			stores = append(stores, layercache.NewRegistry(client, repo))
		}
	}
	if len(stores) == 0 {
		return nil
	}
	lc := layercache.New(stores, layercache.Options{TTL: p.ttl, NoCopyLayers: p.noCopy, NoRunLayers: p.noRun, Log: log})
	log.Info("layer cache", "stores", lc.String(), "ttl", p.ttl.String(), "copy_layers", !p.noCopy, "run_layers", !p.noRun)
	return lc
}

// layerCacheSummary is the metadata file's account of the layer cache.
type layerCacheSummary struct {
	Hits   int                 `json:"hits"`
	Misses int                 `json:"misses"`
	Steps  []builder.CacheStep `json:"steps"`
}

func cacheSummary(res *builder.Result) *layerCacheSummary {
	if len(res.CacheSteps) == 0 {
		return nil
	}
	h, m := res.CacheHits()
	return &layerCacheSummary{Hits: h, Misses: m, Steps: res.CacheSteps}
}

// closeCache waits for entries being stored, then releases the stores.
func closeCache(lc *layercache.Cache) {
	if lc == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	lc.Wait(ctx)
	_ = lc.Close()
}

// readOnlyStore looks entries up but files none: kaniko's --no-push-cache
// for the registry store.
type readOnlyStore struct{ layercache.Store }

func (readOnlyStore) Put(context.Context, layercache.Key, *layercache.Entry) error { return nil }

func (s readOnlyStore) String() string { return s.Store.String() + " (read only: --no-push-cache)" }

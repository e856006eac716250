package builder

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	specs "github.com/opencontainers/image-spec/specs-go/v1"

	"kiln/builder/buildcontext"
	"kiln/builder/dockerfile"
	"kiln/platform"
)

// Request is what to build: plain data, filled from flags or build.toml.
type Request struct {
	Context         string            // source for buildcontext.Open: dir, tar, "-", git or http(s) URL, dir:// or tar://
	Dockerfile      string            // relative to the context, or an absolute host path (inside it or not); default "Dockerfile"
	Platform        specs.Platform    // the platform built; zero value = platform.Host()
	BuildPlatform   specs.Platform    // the machine building ($BUILDPLATFORM); zero value = platform.Host()
	BuildArgs       map[string]string // --build-arg
	Target          string            // stage to build; "" = the last
	Labels          map[string]string // --label, set on the image after the Dockerfile's
	Reproducible    bool              // timestamps from SourceDateEpoch (or 0): same inputs, same digest
	SourceDateEpoch *time.Time        // the time of a reproducible build; nil = the Unix epoch
	Offline         bool              // a base image not in the cache is an error: pass it to CacheThenRemote too
	// AllowPlatformMismatch builds on a base image whose config names
	// another platform than the stage's (it is refused otherwise); each such
	// base is listed in Result.PlatformMismatches.
	AllowPlatformMismatch bool
	// Exclude lists context-relative paths left out of the context whatever
	// .dockerignore says: the build's own outputs, when inside it.
	Exclude []string
	// ContextSubPath is a folder inside the context used as its root
	// (kaniko's --context-sub-path).
	ContextSubPath string
	// Git says how a git context is fetched (kaniko's --git and GIT_*
	// variables).
	Git buildcontext.GitOptions
}

// Result is the built image. Its layers are files in the build's work folder:
// write or push Image before calling Close.
type Result struct {
	Image        v1.Image
	Digest       v1.Hash // the manifest digest
	ConfigDigest v1.Hash
	Platform     specs.Platform
	// PlatformMismatches lists the bases used although their platform is
	// not the stage's (Request.AllowPlatformMismatch): "REF is P1, not P2".
	PlatformMismatches []string
	// CacheSteps are the layer cache's hits and misses, in build order
	// (WithLayerCache).
	CacheSteps []CacheStep

	work string
	lock *os.File // held on the work folder's lock until Close (keep the Result reachable: its finalizer would free the lock)
	wait func()   // waits for layer cache entries still being stored from the work folder
}

// CacheHits counts the steps the layer cache served and those it did not.
func (r *Result) CacheHits() (hits, misses int) {
	for _, s := range r.CacheSteps {
		if s.Hit {
			hits++
		} else {
			misses++
		}
	}
	return hits, misses
}

// Close waits for layer cache entries still being stored (at most a
// minute), then removes the build's work folder, layers included.
func (r *Result) Close() error {
	if r == nil || r.work == "" {
		return nil
	}
	if r.wait != nil {
		r.wait()
	}
	err := os.RemoveAll(r.work)
	if r.lock != nil {
		r.lock.Close()
	}
	return err
}

// Build builds req's target stage for req.Platform. Dockerfile problems are
// *dockerfile.Error values naming the line.
func Build(ctx context.Context, req Request, opts ...Option) (*Result, error) {
	o := newOptions(opts)
	if u, ok := o.bases.(logUser); ok {
		u.useLogger(o.log)
	}
	if r, ok := o.bases.(OfflineReporter); ok && req.Offline && !r.Offline() {
		return nil, fmt.Errorf("an offline build was given base images that pull from registries: %w", ErrOffline)
	}
	req.Platform = targetPlatform(req.Platform)
	sweepStale(o.workDir, o.log)
	work, err := os.MkdirTemp(o.workDir, "kiln-build-")
	if err != nil {
		return nil, fmt.Errorf("making the work folder: %w", err)
	}
	lock, err := lockWork(work)
	if err != nil {
		_ = os.RemoveAll(work)
		return nil, err
	}
	res, err := build(ctx, req, o, work)
	if err != nil {
		(&builder{o: o}).cacheWait() // entries of the steps that worked read the work folder
		_ = os.RemoveAll(work)
		lock.Close()
		return nil, err
	}
	res.lock = lock
	return res, nil
}

// build runs one build in work, leaving only the layer files behind.
func build(ctx context.Context, req Request, o *options, work string) (*Result, error) {
	bc, err := buildcontext.Open(ctx, req.Context, buildcontext.Options{
		Dockerfile: req.Dockerfile, TempDir: work, Stdin: o.stdin, Exclude: req.Exclude,
		SubPath: req.ContextSubPath, GitOptions: req.Git, Log: o.log, HTTPClient: o.http,
	})
	if err != nil {
		return nil, err
	}
	defer bc.Close()
	plan, err := loadPlan(bc, req)
	if err != nil {
		return nil, err
	}
	if unused := unusedArgs(plan, req.BuildArgs); len(unused) > 0 {
		o.log.Warn("build args not consumed by any ARG", "args", unused)
	}
	b := newBuilder(req, o, plan, bc, work)
	defer b.cleanup()
	b.detectAhead()
	st, err := b.stage(ctx, plan.Target)
	if err != nil {
		return nil, err
	}
	img, err := b.finish(st)
	if err != nil {
		return nil, err
	}
	res, err := result(img, req.Platform, work)
	if err != nil {
		return nil, err
	}
	res.PlatformMismatches = b.mismatches
	res.CacheSteps = b.cacheSteps
	res.wait = b.cacheWait
	return res, nil
}

// loadPlan reads the Dockerfile from the context and evaluates it.
func loadPlan(bc *buildcontext.Context, req Request) (*dockerfile.Plan, error) {
	data, err := bc.Dockerfile()
	if err != nil {
		return nil, fmt.Errorf("reading the Dockerfile: %w", err)
	}
	name := req.Dockerfile
	if name == "" {
		name = buildcontext.DefaultDockerfile
	}
	return dockerfile.NewPlan(data, name, dockerfile.Options{
		Args: req.BuildArgs, Target: req.Target, TargetPlatform: req.Platform,
		BuildPlatform: targetPlatform(req.BuildPlatform), // FROM --platform=$BUILDPLATFORM runs natively
	})
}

func targetPlatform(p specs.Platform) specs.Platform {
	if p.OS == "" && p.Architecture == "" {
		return platform.Host()
	}
	return platform.Normalize(p)
}

// result computes the digests of img.
func result(img v1.Image, p specs.Platform, work string) (*Result, error) {
	digest, err := img.Digest()
	if err != nil {
		return nil, fmt.Errorf("computing the image digest: %w", err)
	}
	cfg, err := img.ConfigName()
	if err != nil {
		return nil, fmt.Errorf("computing the config digest: %w", err)
	}
	return &Result{Image: img, Digest: digest, ConfigDigest: cfg, Platform: p, work: work}, nil
}

// unusedArgs lists the build args no ARG of the Dockerfile declares.
func unusedArgs(plan *dockerfile.Plan, buildArgs map[string]string) []string {
	declared := map[string]bool{}
	for _, kv := range plan.GlobalArgs {
		declared[kv[0]] = true
	}
	for _, st := range plan.Stages {
		for _, cmd := range st.Commands {
			if a, ok := cmd.(*instructions.ArgCommand); ok {
				for _, kv := range a.Args {
					declared[kv.Key] = true
				}
			}
		}
	}
	var out []string
	for _, k := range slices.Sorted(maps.Keys(buildArgs)) {
		if !declared[k] {
			out = append(out, k)
		}
	}
	return out
}

package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	specs "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/urfave/cli/v2"

	"kiln/builder"
	"kiln/builder/buildall"
	"kiln/builder/layercache"
	"kiln/builder/runner"
	"kiln/config"
	"kiln/manifest"
	"kiln/platform"
)

func buildAllCommand() *cli.Command {
	return &cli.Command{
		Name:      "build-all",
		Usage:     "build every image of build.toml for every platform and push one index per image",
		UsageText: "kiln build-all [--config build.toml] [--runner local] [--jobs N] [--plan] [--allow-emulation] [--format oci|docker] [--output oci:DIR] [--no-push] [NAME]...",
		Description: `build-all builds each image of build.toml (or only the NAMEs given) for each of its
platforms, then stitches the platform images into one OCI image index and pushes it to every
tag: the platform images go by digest into the first tag's repository (other repositories
mount their blobs), then the index to every tag. An image's output = "oci:DIR" (or --output)
also gets an OCI layout holding the index, filed under the first tag, else the image's name;
an image with no tags, or any with --no-push, goes to ./out/<name> when it names no output.
--format docker makes a Docker manifest list instead, which holds only Docker schema 2
platform images (those built on Docker-format base images).

Before any work, kiln decides from the Dockerfiles how each platform builds here: natively
(this machine's platform), cross (another architecture, but no stage the target needs has a
RUN, or only stages FROM --platform=$BUILDPLATFORM do: Go binaries, static assets), or not at
all: a RUN that would execute another architecture's code needs a node of that architecture
(the kubernetes runner) or --allow-emulation with a binfmt_misc handler registered for it.
--plan prints these decisions and exits.

"platforms" are required: if one fails, the image's index is neither pushed nor written, and
its other platforms stop. "optional_platforms" are best effort: one that fails is left out of
the index and reported. Other images go on regardless. After each build, the ELF headers of
the binaries it added are checked: an arm64 image holding new x86-64 binaries fails.

Examples:
   # Everything in ./build.toml, two platform builds at a time
   kiln build-all

   # What would be built where, and why, without building
   kiln build-all --plan

   # Two images only, into OCI layouts, nothing pushed
   kiln build-all --no-push api web

   # One image into a given layout, reproducible: the same commit, the same index digest
   SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) kiln build-all --no-push --output oci:dist/api --reproducible api

   # Digests for the deploy step
   kiln build-all --metadata-file build-all.json

Exit status: 0 if every image got its index; 1 if a required platform failed (also when
found before any work) or an index could not be pushed or written; 2 for bad flags, an
unknown NAME or a bad build.toml.`,
		ArgsUsage: "[NAME]...",
		Flags: append([]cli.Flag{
			configFlag(), allowFSFlag(),
			&cli.StringFlag{Name: "runner", Usage: "where platform builds run: local, or kubernetes (a Job per platform on a node of its architecture; see [runner.kubernetes])", DefaultText: "runner.kind of build.toml, else local", EnvVars: envs("RUNNER")},
			&cli.IntFlag{Name: "jobs", Aliases: []string{"j"}, Value: buildall.DefaultJobs, Usage: "platform builds at a time", EnvVars: envs("JOBS")},
			&cli.BoolFlag{Name: "plan", Usage: "print what would be built where and why, then exit (1 if something would fail up front)", EnvVars: envs("PLAN")},
			&cli.BoolFlag{Name: "allow-emulation", Usage: "let a RUN execute another architecture's code under a registered binfmt_misc (qemu) handler", EnvVars: envs("ALLOW_EMULATION")},
			&cli.StringFlag{Name: "binfmt-dir", Value: runner.DefaultBinfmtDir, Hidden: true, EnvVars: envs("BINFMT_DIR")},
			&cli.StringFlag{Name: "build-id", Hidden: true, Usage: "the Kubernetes runner's build id (default: a new random one), as kiln render --build-id", EnvVars: envs("BUILD_ID")},
			&cli.StringFlag{Name: "format", Value: string(manifest.FormatOCI), Usage: "the index `FORMAT`: oci (an OCI image index) or docker (a Docker manifest list)", EnvVars: envs("FORMAT")},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the index as an OCI layout: oci:`DIR` (one image only)", EnvVars: envs("OUTPUT")},
			&cli.StringFlag{Name: "metadata-file", Usage: "write JSON with every platform digest and each index digest to `FILE`", EnvVars: envs("METADATA_FILE")},
			&cli.BoolFlag{Name: "no-push", Usage: "push nothing: write each index as an OCI layout (--output, the image's output, or ./out/<name>)", EnvVars: envs("NO_PUSH")},
			&cli.StringFlag{Name: "cache-dir", Usage: "the warm cache to take base images from", DefaultText: "cache.dir of build.toml, else ~/.cache/kiln", EnvVars: envs("CACHE_DIR")},
			&cli.BoolFlag{Name: "offline", Usage: "a base image missing from the cache is an error, not a pull", EnvVars: envs("OFFLINE")},
			allowPlatformMismatchFlag(),
			skipPushCheckFlag(),
			&cli.BoolFlag{Name: "reproducible", Usage: "timestamps from SOURCE_DATE_EPOCH (or 0): the same inputs give the same digests", EnvVars: envs("REPRODUCIBLE")},
			&cli.StringFlag{Name: "work-dir", Usage: "scratch space for stage filesystems and layers", DefaultText: "$TMPDIR", EnvVars: envs("WORK_DIR")},
			progressFlag(),
			logFormatFlag(), verbosityFlag(), logTimestampFlag(),
		}, slices.Concat(runFlags(), []cli.Flag{layerStoreFlag()}, layerCacheFlags(), retryFlags(), registryFlags(manifest.Pull|manifest.Push))...),
		Action:       runBuildAll,
		OnUsageError: usageError,
	}
}

// buildAllSetup is build.toml and the flags turned into what build-all needs.
type buildAllSetup struct {
	kind     string // the runner: local or kubernetes
	cfg      *config.Config
	names    []string
	client   *manifest.Client
	images   []buildall.Image
	cacheDir string
	format   manifest.IndexFormat
	// layerCache: the local runner's stores are the cache folder unless a
	// repository is given; the Kubernetes runner's pods use a registry
	// (the repository given, else each image's + "/cache").
	layerCache layerCachePlan
}

func runBuildAll(c *cli.Context) error {
	out, err := newOutput(c)
	if err != nil {
		return cli.Exit(err.Error(), exitUsage)
	}
	s, err := setupBuildAll(c, out)
	if err != nil {
		return cli.Exit(err.Error(), exitUsage)
	}
	if s.kind != "kubernetes" && !c.Bool("plan") {
		if err := ownUserNamespace(c, s.cacheDir, out.log); err != nil {
			return err
		}
	}
	workDir := c.String("work-dir")
	if workDir == "" {
		workDir = os.TempDir()
	}
	builder.SweepStale(workDir, out.log) // what killed builds left, overlays included
	var layout *manifest.Layout
	if l, err := manifest.OpenExistingLayout(s.cacheDir); err == nil {
		layout = l
	} else if !errors.Is(err, manifest.ErrNotLayout) {
		return cli.Exit(err.Error(), exitFailed)
	}
	runOpts, err := runOptions(c, s.cacheDir)
	if err != nil {
		return cli.Exit(err.Error(), exitUsage)
	}
	bases := builder.CacheThenRemote(layout, s.client, c.Bool("offline"))
	defer bases.Close()
	var lc *layercache.Cache
	if s.kind != "kubernetes" {
		if st := openLayerStore(c, s.cacheDir, out.log); st != nil {
			defer st.Close()
			runOpts = append(runOpts, builder.WithLayerStore(st))
		}
		if lc = s.layerCache.open(s.client, s.cacheDir, out.log); lc != nil {
			defer closeCache(lc)
			runOpts = append(runOpts, builder.WithLayerCache(lc))
		}
	}
	r := newLocalRunner(c, out, bases, runOpts)
	if s.kind == "kubernetes" {
		kr, err := newKubeRunner(c, out, s, workDir)
		if err != nil {
			return cli.Exit(err.Error(), exitFailed)
		}
		defer kr.Cleanup() // every Job it made, also on Ctrl-C or SIGTERM
		r = kr
	}
	copts := append(coordinatorOptions(c, out, s), buildall.WithBaseImages(bases, c.Bool("allow-platform-mismatch")))
	if out.live != nil && !c.Bool("plan") {
		copts = append(copts, buildall.WithProgress(func(image string, p specs.Platform) func(builder.StepEvent) {
			return out.stepView(fmt.Sprintf("[%s %s] ", image, platform.Format(p)))
		}))
	}
	coord := buildall.New(r, copts...)
	plan, err := coord.Plan(c.Context, s.images)
	if err != nil {
		return cli.Exit(err.Error(), exitUsage)
	}
	if !c.Bool("plan") && !c.Bool("skip-push-permission-check") {
		var tags []name.Reference
		for _, im := range s.images {
			if im.Push {
				tags = append(tags, im.Tags...)
			}
		}
		if err := s.client.CheckPush(c.Context, tags); err != nil {
			return cli.Exit(err.Error(), exitFailed) // before any Job or build
		}
	}
	if c.Bool("plan") {
		fmt.Fprint(c.App.Writer, plan)
		fmt.Fprintf(c.App.Writer, "layer cache: %s\n", s.layerCache.describe(s.kind, lc))
		if plan.Failed() {
			return cli.Exit("some images would fail before any work (see above)", exitFailed)
		}
		return nil
	}
	rep, err := coord.Run(c.Context, plan)
	out.stopSteps()
	if err != nil {
		return cli.Exit(err.Error(), exitFailed)
	}
	printBuildAllSummary(c.App.Writer, rep)
	if c.Bool("allow-platform-mismatch") {
		fmt.Fprintln(c.App.Writer, "WARNING: --allow-platform-mismatch: bases of another platform were allowed (each build's log names them)")
	}
	if err := writeBuildAllMetadata(c.String("metadata-file"), rep, c.Bool("allow-platform-mismatch")); err != nil {
		return cli.Exit(err.Error(), exitFailed)
	}
	return buildAllExit(rep)
}

func newLocalRunner(c *cli.Context, out *output, bases builder.BaseImages, runOpts []builder.Option) runner.Runner {
	return runner.NewLocal(
		runner.WithBuildOptions(runOpts...),
		runner.WithBaseImages(bases),
		runner.WithWorkDir(c.String("work-dir")),
		runner.WithLogger(out.log),
		runner.WithAllowEmulation(c.Bool("allow-emulation")),
		runner.WithBinfmtDir(c.String("binfmt-dir")),
	)
}

func coordinatorOptions(c *cli.Context, out *output, s *buildAllSetup) []buildall.Option {
	opts := []buildall.Option{
		buildall.WithJobs(c.Int("jobs")),
		buildall.WithAllowEmulation(c.Bool("allow-emulation")),
		buildall.WithBinfmtDir(c.String("binfmt-dir")),
		buildall.WithClient(s.client),
		buildall.WithFormat(s.format),
		buildall.WithLogger(out.log),
		buildall.WithTempDir(c.String("work-dir")),
	}
	if logFormat(c) == "text" && (out.live == nil || s.kind == "kubernetes") {
		// Job lines, each behind "[name platform] "; JSON logs carry the
		// image and platform as attributes instead. On a terminal the
		// local runner's builds show their steps in the live display
		// (the pods of the Kubernetes runner only have their logs).
		opts = append(opts, buildall.WithLogWriter(errWriter(c)))
	}
	return opts
}

func errWriter(c *cli.Context) io.Writer {
	if c.App.ErrWriter != nil {
		return c.App.ErrWriter
	}
	return os.Stderr
}

// setupBuildAll checks the flags, reads build.toml and makes the images.
func setupBuildAll(c *cli.Context, out *output) (*buildAllSetup, error) {
	if err := checkRunner(c); err != nil {
		return nil, err
	}
	if n := c.Int("jobs"); n < 1 || n > 256 {
		return nil, fmt.Errorf("--jobs: must be 1..256, got %d", n)
	}
	format, err := manifest.ParseIndexFormat(c.String("format"))
	if err != nil {
		return nil, fmt.Errorf("--format: %w", err)
	}
	copts, err := configOptions(c)
	if err != nil {
		return nil, err
	}
	cfg, err := config.Load(c.String("config"), copts...)
	if err != nil {
		return nil, err
	}
	if err := checkRunnerKind(cfg.Runner.Kind, c.IsSet("runner")); err != nil {
		return nil, err
	}
	s := &buildAllSetup{cfg: cfg, format: format, cacheDir: cfg.Cache.Dir, kind: cfg.Runner.Kind}
	if c.IsSet("runner") {
		s.kind = c.String("runner")
	}
	if s.kind == "kubernetes" && cfg.Runner.Kubernetes.Image == "" {
		return nil, fmt.Errorf("%s: runner.kubernetes.image: the Kubernetes runner runs kiln's own image in each Job: set it (make image, then push out/kiln)", cfg.File)
	}
	if s.kind == "kubernetes" && len(c.StringSlice("secret")) > 0 {
		// A secret file on this machine would have to travel in the Job
		// (its args, env or a Secret kiln creates): kiln does none of that.
		return nil, fmt.Errorf("--secret: the Kubernetes runner does not carry local secrets into its pods; " +
			"build the images that need RUN --mount=type=secret with the local runner for now")
	}
	if s.names, err = selectImages(c, cfg); err != nil {
		return nil, err
	}
	if s.kind == "kubernetes" {
		if err := checkKubeRegistryFlags(c, cfg); err != nil {
			return nil, err
		}
	}
	if s.client, err = newClient(c, cfg, out.log); err != nil {
		return nil, err
	}
	setString(c, "cache-dir", &s.cacheDir)
	if s.cacheDir == "" {
		s.cacheDir = defaultCacheDir()
	}
	s.layerCache.fromConfig(cfg.Cache)
	if err := s.layerCache.applyFlags(c, nil, false); err != nil {
		return nil, err
	}
	for _, n := range s.names {
		im, err := buildAllImage(c, out, s, n)
		if err != nil {
			return nil, err
		}
		s.images = append(s.images, im)
	}
	return s, nil
}

// checkRunner accepts --runner local or kubernetes.
func checkRunner(c *cli.Context) error {
	if !c.IsSet("runner") {
		return nil
	}
	return checkRunnerKind(c.String("runner"), false)
}

func checkRunnerKind(kind string, overridden bool) error {
	switch {
	case overridden, kind == "", kind == "local":
		return nil
	case kind == "kubernetes":
		return nil
	}
	return fmt.Errorf("--runner: want local or kubernetes, got %q", kind)
}

// selectImages is the NAMEs given, checked, in build.toml's (sorted) order;
// none given: every image.
func selectImages(c *cli.Context, cfg *config.Config) ([]string, error) {
	all := cfg.ImageNames()
	if len(all) == 0 {
		return nil, fmt.Errorf("%s has no [images.NAME] to build", cfg.File)
	}
	args := c.Args().Slice()
	for _, a := range args {
		if !slices.Contains(all, a) {
			return nil, fmt.Errorf("%s: no [images.%s] (images: %s)", cfg.File, a, strings.Join(all, ", "))
		}
	}
	names := all
	if len(args) > 0 {
		names = slices.DeleteFunc(slices.Clone(all), func(n string) bool { return !slices.Contains(args, n) })
	}
	if c.IsSet("output") && len(names) != 1 {
		return nil, fmt.Errorf("--output names one layout for one image; %d images are selected: name one, or set output per image in build.toml", len(names))
	}
	return names, nil
}

// buildAllImage turns [images.NAME] and the flags into a buildall.Image.
func buildAllImage(c *cli.Context, out *output, s *buildAllSetup, imageName string) (buildall.Image, error) {
	img := s.cfg.Images[imageName]
	im := buildall.Image{
		Name: imageName,
		Request: builder.Request{Context: img.Context, Dockerfile: img.Dockerfile, Target: img.Target,
			BuildArgs: copyMap(img.Args), Labels: copyMap(img.Labels), Offline: c.Bool("offline"),
			AllowPlatformMismatch: c.Bool("allow-platform-mismatch")},
		Platforms: img.Platforms, OptionalPlatforms: img.OptionalPlatforms,
	}
	if err := applyReproducible(c, &im.Request); err != nil {
		return im, err
	}
	im.Request.Git, _ = gitOptions(nil, os.Getenv) // GIT_USERNAME and friends, for git contexts built here
	for _, t := range img.Tags {
		ref, err := s.client.ParseReference(t)
		if err != nil {
			return im, fmt.Errorf("images.%s.tags: %w", imageName, err)
		}
		im.Tags = append(im.Tags, ref)
	}
	im.Push = len(im.Tags) > 0 && !c.Bool("no-push")
	switch kind, dest, _ := strings.Cut(img.Output, ":"); kind {
	case "oci":
		im.OCIDir = dest
	case "tar":
		out.log.Warn("build-all writes an index, which a docker-load tarball cannot hold: ignoring the output", "image", imageName, "output", img.Output)
	}
	if c.IsSet("output") {
		dir, ok := strings.CutPrefix(c.String("output"), "oci:")
		if !ok || dir == "" {
			return im, fmt.Errorf("--output: want oci:DIR, got %q", c.String("output"))
		}
		im.OCIDir = dir
	}
	if !im.Push && im.OCIDir == "" {
		im.OCIDir = filepath.Join("out", imageName) // the embedded default: no registry needed
	}
	im.Request.Exclude = excludeOutputs(out.log, im.Request.Context, im.OCIDir, c.String("metadata-file"))
	return im, nil
}

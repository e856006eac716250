package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	specs "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/urfave/cli/v2"

	"kiln/builder"
	"kiln/builder/buildcontext"
	"kiln/builder/dockerfile"
	"kiln/builder/rootfs"
	"kiln/builder/run"
	"kiln/builder/runner"
	"kiln/builder/runner/kube"
	"kiln/config"
	"kiln/manifest"
	"kiln/platform"
)

func buildCommand() *cli.Command {
	return &cli.Command{
		Name:      "build",
		Usage:     "build one platform of an image from a Dockerfile, in userspace, without a Docker daemon",
		UsageText: "kiln build [--config build.toml NAME] | [--context DIR] [--dockerfile F] [--platform P] [--destination REF]... [--output oci:DIR | --tar-path FILE]",
		Description: `build executes a Dockerfile for one platform: it takes the FROM images from the warm cache
(--cache-dir) or the registry, runs every instruction, turns each change into a layer, and
pushes the image to every --destination, or writes it as an OCI layout (--output oci:DIR, the
default when there is no destination: ./out/<name>) or a docker-load tarball (--tar-path).

Examples:
   # From build.toml: image "api" for this machine's platform, pushed to its tags
   kiln build --config build.toml api

   # The same for arm64 into an OCI layout, nothing pushed
   kiln build --config build.toml --platform linux/arm64 --no-push --output oci:out/api-arm64 api

   # Without build.toml, kaniko style
   kiln build --context . --dockerfile Dockerfile --destination registry.example.com/acme/app:1.0 \
              --build-arg VERSION=1.0 --label org.opencontainers.image.revision=$GIT_SHA

   # RUN with a secret (RUN --mount=type=secret,id=npmrc) and a cache mount kept in the cache dir
   kiln build --context . --secret id=npmrc,src=$HOME/.npmrc --cache-dir /cache

   # In a pod without extra privileges, from kiln's own image: the stage becomes the container's /
   kiln build --context /workspace --isolation container --destination registry.example.com/acme/app:1.0

   # Layer cache (kaniko's flags): unchanged steps come from registry.example.com/acme/app/cache
   kiln build --context . --destination registry.example.com/acme/app:1.0 --cache
   # ... or from the warm cache folder, with no registry
   kiln build --context . --cache --cache-dir /cache

   # Reproducible: the same inputs give the same digest
   SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) kiln build --context . --reproducible --digest-file digest.txt

Contexts, as kaniko and docker build take them (--context):
   a folder, dir://PATH          used in place
   a tar or tar.gz, tar://PATH   unpacked; - or tar://stdin reads one (or a lone Dockerfile) on stdin
   https://HOST/ctx.tar.gz       downloaded; also an Azure blob or a pre-signed S3/GCS URL (kiln sends no
                                 cloud credentials; s3:// and gs:// are refused: copy the tarball first, pass tar://PATH)
   git://HOST/ORG/REPO#REF#COMMIT  kaniko's reading: fetched over HTTPS (GIT_PULL_METHOD=http for plain HTTP),
                                 REF a branch, a tag or a full name (refs/heads/main, refs/pull/7/head), COMMIT
                                 checked out from its history; submodules only with --git recurse-submodules=true
   https://HOST/REPO.git#REF:DIR, git@HOST:REPO.git, ssh://…  Docker's reading: DIR is the context root,
                                 submodules always fetched
   Git credentials: GIT_USERNAME and GIT_PASSWORD, or GIT_TOKEN (sent as the username), for the remote's host only.
   kiln runs the git binary when there is one and its built-in client (go-git) when not, as in its own image.
   --context-sub-path DIR makes a folder inside the context its root; --git branch=B picks the ref of a URL naming none.

The Dockerfile (--dockerfile), in kaniko's order: an absolute path; else a path that exists from the
working directory (docker build -f's reading); else a path inside the context root. Without the flag it
is Dockerfile in the context. A Dockerfile outside the context works as with docker build -f, and its
<Dockerfile>.dockerignore beside it wins over the context's .dockerignore.

Invoked as executor (kiln's image keeps /kaniko/executor), kiln is kiln build with kaniko's defaults
(--context /workspace/, -c for --context); as warmer (/kaniko/warmer), kiln warm. Registry credentials
come from $DOCKER_CONFIG/config.json, else /kaniko/.docker/config.json, else ~/.docker/config.json.

RUN executes natively (never emulated unless --allow-emulation): --isolation picks chroot (root),
rootless (a user namespace) or container (the kaniko way); --snapshot picks overlay (the cost of a
step is what it changed) or walk. Both are chosen automatically and logged when not given. Rootless
with a subordinate id range (/etc/subuid, newuidmap), the whole build runs in a user namespace of
kiln's own, where stages are mounted from the layer store as root's are.
In chroot and rootless isolation a step is confined as a Docker container is: moby's default seccomp
profile, /proc/sys and friends read-only, /proc/kcore and friends masked, device nodes it may create
but never open, at most 4096 processes. Loosen it only for a step that needs it:
   kiln build --context . --security-opt seccomp=unconfined --pids-limit -1 --ulimit nofile=65536

A kaniko command line runs unchanged: every flag of kaniko's executor is accepted, with kaniko's
meaning (see "kaniko compatibility" below, and README.md's "Switching from kaniko"). As in kaniko,
-c is --context, -f --dockerfile, -d --destination and -v --verbosity.

Exit status: 0 if the image was built and written or pushed everywhere asked; 1 if the build
or a push failed; 2 for bad flags, build.toml or Dockerfile.`,
		ArgsUsage: "[NAME]",
		Flags: kanikoShortFlags(append(append([]cli.Flag{
			configFlag(), allowFSFlag(),
			&cli.StringFlag{Name: "context", Usage: "build context: a folder (or dir://PATH), a .tar/.tar.gz file (or tar://PATH), - or tar://stdin for a tar on stdin, an https:// tarball, or a git URL: Docker's repo.git#ref:subdir, kaniko's git://host/org/repo#ref#commit (see below)", EnvVars: envs("CONTEXT")},
			&cli.StringFlag{Name: "dockerfile", Aliases: []string{"f"}, Usage: "the Dockerfile: an absolute path, a path from the working directory, else a path in the context (kaniko's order; see below)", DefaultText: "Dockerfile in the context", EnvVars: envs("DOCKERFILE")},
			&cli.StringFlag{Name: "platform", Usage: "the platform to build", DefaultText: "this machine's", EnvVars: envs("PLATFORM")},
			&cli.StringSliceFlag{Name: "build-arg", Usage: "set a Dockerfile ARG, `K=V` (repeatable)", EnvVars: envs("BUILD_ARG")},
			&cli.StringFlag{Name: "target", Usage: "build this `STAGE` (default: the last)", EnvVars: envs("TARGET")},
			&cli.StringSliceFlag{Name: "label", Usage: "add a label `K=V` to the image (repeatable)", EnvVars: envs("LABEL")},
			&cli.StringSliceFlag{Name: "destination", Aliases: []string{"d"}, Usage: "push to this `REF` (repeatable)", EnvVars: envs("DESTINATION")},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "also write the image as an OCI layout: oci:`DIR`", EnvVars: envs("OUTPUT")},
			&cli.StringFlag{Name: "tar-path", Usage: "also write a docker-load tarball to `FILE`", EnvVars: envs("TAR_PATH")},
			&cli.BoolFlag{Name: "no-push", Usage: "build (and write --output/--tar-path) but push nothing", EnvVars: envs("NO_PUSH")},
			&cli.BoolFlag{Name: "push-by-digest", Usage: "push to each --destination's repository by digest only, no tag (what build-all's Kubernetes Jobs do)", EnvVars: envs("PUSH_BY_DIGEST")},
			&cli.StringFlag{Name: "cache-dir", Usage: "the warm cache to take base images from", DefaultText: "cache.dir of build.toml, else ~/.cache/kiln", EnvVars: envs("CACHE_DIR")},
			&cli.BoolFlag{Name: "offline", Usage: "a base image missing from the cache is an error, not a pull", EnvVars: envs("OFFLINE")},
			allowPlatformMismatchFlag(),
			skipPushCheckFlag(),
			&cli.BoolFlag{Name: "reproducible", Usage: "timestamps from SOURCE_DATE_EPOCH (or 0): the same inputs give the same digest", EnvVars: envs("REPRODUCIBLE")},
			&cli.StringFlag{Name: "digest-file", Usage: "write the image digest to `FILE`", EnvVars: envs("DIGEST_FILE")},
			&cli.StringFlag{Name: "metadata-file", Usage: "write JSON metadata (digests, platform, tags) to `FILE`", EnvVars: envs("METADATA_FILE")},
			&cli.StringFlag{Name: "work-dir", Usage: "scratch space for stage filesystems and layers", DefaultText: "$TMPDIR", EnvVars: envs("WORK_DIR")},
			&cli.BoolFlag{Name: "allow-emulation", Usage: "let a RUN execute another architecture's code under a registered binfmt_misc (qemu) handler", EnvVars: envs("ALLOW_EMULATION")},
			&cli.StringFlag{Name: "binfmt-dir", Value: runner.DefaultBinfmtDir, Hidden: true, EnvVars: envs("BINFMT_DIR")},
			progressFlag(),
			logFormatFlag(), verbosityFlag(), logTimestampFlag(),
		}, slices.Concat(runFlags(), []cli.Flag{layerStoreFlag()}, layerCacheFlags(), retryFlags(), registryFlags(manifest.Pull|manifest.Push), contextFlags())...), kanikoBuildFlags()...), kanikoBuildShorts),
		Action:       runBuild,
		OnUsageError: usageError,
	}
}

// buildPlan is the flags and build.toml turned into one build.
type buildPlan struct {
	name       string
	req        builder.Request
	dests      []name.Reference // the image's tags: pushed unless --no-push, named in outputs
	push       bool
	ociDir     string
	tarPath    string
	cacheDir   string
	cfg        *config.Config // build.toml, nil if none: its [registries]
	layerCache layerCachePlan
}

func runBuild(c *cli.Context) error {
	out, err := newOutput(c)
	if err != nil {
		return cli.Exit(err.Error(), exitUsage)
	}
	notices, err := applyKanikoBuild(c)
	if err != nil {
		return cli.Exit(err.Error(), exitUsage)
	}
	logKanikoNotices(out.log, notices)
	plan, err := planBuild(c)
	if err != nil {
		return cli.Exit(err.Error(), exitUsage)
	}
	if c.Bool("dryrun") {
		if err := dryRun(c, plan); err != nil {
			return cli.Exit(err.Error(), exitUsage)
		}
		return nil
	}
	if err := ownUserNamespace(c, plan.cacheDir, out.log); err != nil {
		return err
	}
	plan.req.Exclude = append(plan.req.Exclude, excludeOutputs(out.log, contextRoot(plan.req),
		plan.ociDir, plan.tarPath, c.String("digest-file"), c.String("metadata-file"))...)
	client, err := newClient(c, plan.cfg, out.log, kanikoClientOptions(c)...)
	if err != nil {
		return cli.Exit(err.Error(), exitUsage)
	}
	if ref, ok := strings.CutPrefix(plan.req.Context, blobScheme); ok {
		d, err := name.NewDigest(ref)
		if err != nil {
			return cli.Exit(fmt.Sprintf("--context %s%s: want %sREPOSITORY@sha256:HEX: %v", blobScheme, ref, blobScheme, err), exitUsage)
		}
		file, cleanup, err := fetchContext(c, client, d)
		if err != nil {
			return cli.Exit(err.Error(), exitFailed)
		}
		defer cleanup()
		plan.req.Context = file
	}
	var layout *manifest.Layout
	if l, err := manifest.OpenExistingLayout(plan.cacheDir); err == nil {
		layout = l
	} else if !errors.Is(err, manifest.ErrNotLayout) {
		return cli.Exit(err.Error(), exitFailed)
	}
	if plan.push && !c.Bool("skip-push-permission-check") {
		if err := client.CheckPush(c.Context, plan.dests); err != nil {
			return cli.Exit(err.Error(), exitFailed) // before any work: a wrong token must not cost a whole build
		}
	}
	bases := builder.CacheThenRemote(layout, client, plan.req.Offline)
	defer bases.Close()

	start := time.Now()
	out.log.Info("build starting", "image", plan.name, "platform", platform.Format(plan.req.Platform), "context", plan.req.Context)
	runOpts, err := runOptions(c, plan.cacheDir)
	if err != nil {
		return cli.Exit(err.Error(), exitUsage)
	}
	if c.Bool("allow-emulation") {
		if err := checkEmulation(c, plan.req.Platform); err != nil {
			return cli.Exit(err.Error(), exitUsage)
		}
		runOpts = append(runOpts, builder.WithAllowEmulation(true))
	}
	opts := append([]builder.Option{builder.WithBaseImages(bases), builder.WithLogger(out.log), builder.WithWorkDir(c.String("work-dir")),
		builder.WithKeepBaseBlobs(plan.ociDir != "" || plan.tarPath != "")}, runOpts...)
	opts = append(opts, kanikoBuilderOptions(c)...)
	if lc := plan.layerCache.open(client, plan.cacheDir, out.log); lc != nil {
		defer closeCache(lc)
		opts = append(opts, builder.WithLayerCache(lc))
	}
	if st := openLayerStore(c, plan.cacheDir, out.log); st != nil {
		defer st.Close()
		opts = append(opts, builder.WithLayerStore(st))
	}
	if view := out.stepView(""); view != nil {
		opts = append(opts, builder.WithProgress(view))
	}
	for _, p := range []string{plan.ociDir, plan.tarPath, c.String("digest-file"), c.String("metadata-file")} {
		if p != "" {
			opts = append(opts, builder.WithKeep(p)) // written after the build: --isolation container must not remove them
		}
	}
	res, err := builder.Build(c.Context, plan.req, opts...)
	out.stopSteps()
	if err != nil {
		return buildFailure(err)
	}
	defer res.Close()
	if err := kanikoImage(c, res); err != nil {
		return cli.Exit(err.Error(), exitFailed)
	}
	if err := writeOutputs(c, client, out.log, plan, res); err != nil {
		return cli.Exit(err.Error(), exitFailed)
	}
	printBuildSummary(c, plan, res, time.Since(start))
	return nil
}

// buildFailure: a Dockerfile or input problem exits 2, anything else 1.
func buildFailure(err error) error {
	var de *dockerfile.Error
	switch {
	case runtimeFailure(err):
		return cli.Exit(err.Error(), exitFailed)
	case errors.Is(err, manifest.ErrIntegrity), errors.Is(err, rootfs.ErrInvalidLayer), errors.As(err, new(*manifest.AccessError)):
		// Hostile or damaged content from a registry, the cache or a layout,
		// or a cache this user cannot read: not the Dockerfile's fault, even
		// though it is reported at a FROM line.
		return cli.Exit(err.Error(), exitFailed)
	case errors.As(err, new(*builder.RunError)), errors.Is(err, run.ErrSetup), errors.Is(err, run.ErrUnmappedID):
		return cli.Exit(err.Error(), exitFailed) // a RUN step ran (or was set up) and failed
	case errors.As(err, &de), errors.Is(err, dockerfile.ErrUnknownTarget), errors.Is(err, builder.ErrForeignRun),
		errors.Is(err, builder.ErrNotSupported), errors.Is(err, fs.ErrNotExist), errors.Is(err, buildcontext.ErrUnsupportedSource):
		return cli.Exit(err.Error(), exitUsage)
	}
	return cli.Exit(err.Error(), exitFailed)
}

// checkEmulation: --allow-emulation for a platform this machine cannot
// execute needs a binfmt_misc handler for it.
func checkEmulation(c *cli.Context, p specs.Platform) error {
	if p.Architecture == "" || platform.CanExecute(platform.Host(), p) {
		return nil
	}
	if _, ok := runner.BinfmtHandler(c.String("binfmt-dir"), p); !ok {
		return fmt.Errorf("--allow-emulation: no binfmt_misc handler for %s is registered in %s (install qemu-user-static, or build on a %s node)",
			platform.Format(p), c.String("binfmt-dir"), p.Architecture)
	}
	return nil
}

// runtimeFailure says whether err is something that went wrong while
// building (a registry, the network, the cache, a cancelled run) rather than
// a fault of the Dockerfile or the flags, even when it carries a line number.
func runtimeFailure(err error) bool {
	var te *transport.Error
	var oe *net.OpError // not net.Error: syscall.Errno implements it, and a missing file is the user's
	var de *net.DNSError
	var ue *url.Error
	return errors.Is(err, builder.ErrOffline) || errors.Is(err, context.Canceled) ||
		errors.Is(err, context.DeadlineExceeded) || errors.As(err, &te) || errors.As(err, &oe) ||
		errors.As(err, &de) || errors.As(err, &ue)
}

func planBuild(c *cli.Context) (*buildPlan, error) {
	plan := &buildPlan{}
	if c.NArg() > 1 {
		return nil, fmt.Errorf("one image NAME at a time (kiln build-all builds several)")
	}
	if c.NArg() == 1 {
		if err := planFromConfig(c, plan); err != nil {
			return nil, err
		}
	} else {
		plan.name = "image"
		plan.req.Context = "."
		if c.IsSet("config") {
			// No NAME: the flags say what to build, build.toml still says
			// how to reach registries and where the cache is.
			cfg, err := loadConfig(c)
			if err != nil {
				return nil, err
			}
			applyMachineConfig(cfg, plan)
		}
	}
	return plan, applyBuildFlags(c, plan)
}

// applyMachineConfig takes build.toml's [registries.*] and [cache] into the
// plan: what every build on this machine shares, whatever it builds.
func applyMachineConfig(cfg *config.Config, plan *buildPlan) {
	plan.cacheDir = cfg.Cache.Dir
	plan.layerCache.fromConfig(cfg.Cache)
	plan.cfg = cfg
}

// planFromConfig fills the plan from build.toml's [images.NAME].
func planFromConfig(c *cli.Context, plan *buildPlan) error {
	copts, err := configOptions(c)
	if err != nil {
		return err
	}
	cfg, err := config.Load(c.String("config"), copts...)
	if err != nil {
		return err
	}
	imageName := c.Args().First()
	img, ok := cfg.Images[imageName]
	if !ok {
		return fmt.Errorf("%s: no [images.%s] (images: %s)", cfg.File, imageName, strings.Join(cfg.ImageNames(), ", "))
	}
	plan.name = imageName
	plan.req = builder.Request{Context: img.Context, Dockerfile: img.Dockerfile, Target: img.Target, BuildArgs: copyMap(img.Args), Labels: copyMap(img.Labels)}
	applyMachineConfig(cfg, plan)
	for _, t := range img.Tags {
		ref, err := name.ParseReference(t)
		if err != nil {
			return fmt.Errorf("images.%s.tags: %w", imageName, err)
		}
		plan.dests = append(plan.dests, ref)
	}
	if dir, ok := strings.CutPrefix(img.Output, "oci:"); ok {
		plan.ociDir = dir
	} else if file, ok := strings.CutPrefix(img.Output, "tar:"); ok {
		plan.tarPath = file
	}
	if !c.IsSet("platform") && len(img.Platforms) > 0 {
		plan.req.Platform = hostOrFirst(img.Platforms)
	}
	return nil
}

// hostOrFirst picks this machine's platform if the image is built for it.
func hostOrFirst(ps []specs.Platform) specs.Platform {
	for _, p := range ps {
		if platform.Equal(p, platform.Host()) {
			return p
		}
	}
	return ps[0]
}

func applyBuildFlags(c *cli.Context, plan *buildPlan) error {
	r := &plan.req
	setString(c, "context", &r.Context)
	setString(c, "dockerfile", &r.Dockerfile)
	setString(c, "target", &r.Target)
	if err := applyContextFlags(c, r); err != nil {
		return err
	}
	setString(c, "cache-dir", &plan.cacheDir)
	setString(c, "tar-path", &plan.tarPath)
	if plan.cacheDir == "" {
		plan.cacheDir = defaultCacheDir()
	}
	if c.IsSet("platform") {
		p, err := platform.Parse(c.String("platform"))
		if err != nil {
			return fmt.Errorf("--platform: %w", err)
		}
		r.Platform = p
	}
	if r.Platform.OS == "" {
		r.Platform = platform.Host()
	}
	var err error
	if r.BuildArgs, err = keyValues(c, "build-arg", r.BuildArgs); err != nil {
		return err
	}
	if r.Labels, err = keyValues(c, "label", r.Labels); err != nil {
		return err
	}
	if err := applyDestinations(c, plan); err != nil {
		return err
	}
	r.Offline = c.Bool("offline")
	r.AllowPlatformMismatch = c.Bool("allow-platform-mismatch")
	if err := plan.layerCache.applyFlags(c, plan.dests, plan.push); err != nil {
		return err
	}
	return applyReproducible(c, r)
}

func applyDestinations(c *cli.Context, plan *buildPlan) error {
	if c.IsSet("destination") {
		plan.dests = nil
		for _, d := range splitCommas(c.StringSlice("destination")) {
			ref, err := name.ParseReference(d)
			if err != nil {
				return fmt.Errorf("--destination %q: %w", d, err)
			}
			plan.dests = append(plan.dests, ref)
		}
	}
	if c.IsSet("output") {
		dir, ok := strings.CutPrefix(c.String("output"), "oci:")
		if !ok || dir == "" {
			return fmt.Errorf("--output: want oci:DIR, got %q", c.String("output"))
		}
		plan.ociDir = dir
	}
	plan.push = len(plan.dests) > 0 && !c.Bool("no-push")
	if c.Bool("push-by-digest") && len(plan.dests) == 0 {
		return fmt.Errorf("--push-by-digest: give the repository with --destination")
	}
	if !plan.push && plan.ociDir == "" && plan.tarPath == "" {
		plan.ociDir = filepath.Join("out", plan.name) // the embedded default: no registry needed
	}
	return nil
}

func applyReproducible(c *cli.Context, r *builder.Request) error {
	if !c.Bool("reproducible") {
		return nil
	}
	r.Reproducible = true
	if v := os.Getenv("SOURCE_DATE_EPOCH"); v != "" {
		var secs int64
		if _, err := fmt.Sscanf(v, "%d", &secs); err != nil || secs < 0 {
			return fmt.Errorf("SOURCE_DATE_EPOCH: want seconds since 1970, got %q", v)
		}
		t := time.Unix(secs, 0).UTC()
		r.SourceDateEpoch = &t
	}
	return nil
}

func setString(c *cli.Context, flag string, dst *string) {
	if c.IsSet(flag) {
		*dst = c.String(flag)
	}
}

// keyValues merges repeated K=V flags over base.
func keyValues(c *cli.Context, flag string, base map[string]string) (map[string]string, error) {
	out := copyMap(base)
	for _, kv := range c.StringSlice(flag) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok && flag == "build-arg" {
			// As with docker: --build-arg NAME takes NAME's value from the environment.
			if ev, set := os.LookupEnv(kv); set {
				out[kv] = ev
				continue
			}
		}
		if !ok || k == "" {
			return nil, fmt.Errorf("--%s %q: want KEY=VALUE", flag, kv)
		}
		out[k] = v
	}
	return out, nil
}

func copyMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// writeOutputs pushes and writes the built image where the plan says.
func writeOutputs(c *cli.Context, client *manifest.Client, log *slog.Logger, plan *buildPlan, res *builder.Result) error {
	if plan.ociDir != "" {
		l, err := manifest.OpenLayout(plan.ociDir)
		if err != nil {
			return fmt.Errorf("--output oci:%s: %w", plan.ociDir, err)
		}
		if _, err := l.WriteImage(c.Context, res.Image, ociRefName(plan)); err != nil {
			return fmt.Errorf("writing oci:%s: %w", plan.ociDir, err)
		}
	}
	if plan.tarPath != "" {
		if err := manifest.WriteTarball(plan.tarPath, res.Image, tagsOf(plan.dests)); err != nil {
			return err
		}
	}
	if plan.push {
		dests := plan.dests
		if c.Bool("push-by-digest") {
			var err error
			if dests, err = byDigest(plan.dests, res); err != nil {
				return err
			}
		}
		if err := pushImage(c, client, log, res.Image, dests); err != nil {
			return keepUnpushed(c, plan, res, dests, err)
		}
	}
	return writeBuildFiles(c, plan, res)
}

// keepUnpushed keeps a built image whose push failed, so that it can be
// pushed again without building: the --output layout if there is one,
// else a layout in the work folder's parent, and says how.
func keepUnpushed(c *cli.Context, plan *buildPlan, res *builder.Result, dests []name.Reference, pushErr error) error {
	dir := plan.ociDir
	refName := ociRefName(plan)
	if dir == "" {
		base := c.String("work-dir")
		if base == "" {
			base = os.TempDir()
		}
		dir = filepath.Join(base, fmt.Sprintf("kiln-unpushed-%s-%s", plan.name, res.Digest.Hex[:12]))
		l, err := manifest.OpenLayout(dir)
		if err == nil {
			_, err = l.WriteImage(c.Context, res.Image, refName)
		}
		if err != nil {
			return fmt.Errorf("%w\n    (and keeping the image failed too: %v)", pushErr, err)
		}
	}
	var to []string
	for _, d := range dests {
		to = append(to, d.String())
	}
	return fmt.Errorf("%w\n    the image is kept in oci:%s; push it without building again:\n    kiln push --from oci:%s --ref %s %s",
		pushErr, dir, dir, refName, strings.Join(to, " "))
}

// blobScheme marks a build context held in a registry as one blob, a
// gzipped tar, fetched by digest and checked: blob://REPO@sha256:HEX. It is
// how build-all's Kubernetes Jobs get their context.
const blobScheme = "blob://"

// fetchContext downloads a blob:// context into a temp file under
// --work-dir.
func fetchContext(c *cli.Context, client *manifest.Client, d name.Digest) (string, func(), error) {
	dir, err := os.MkdirTemp(c.String("work-dir"), "kiln-context-blob-")
	if err != nil {
		return "", nil, fmt.Errorf("--context: %w", err)
	}
	cleanup := func() { os.RemoveAll(dir) }
	file := filepath.Join(dir, "context.tar.gz")
	if err := client.DownloadBlobFile(c.Context, d, file); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("fetching the build context: %w", err)
	}
	return file, cleanup, nil
}

func skipPushCheckFlag() cli.Flag {
	return &cli.BoolFlag{Name: "skip-push-permission-check", Usage: "do not check push access to every destination before building (for registries where an upload session cannot be opened and cancelled)", EnvVars: envs("SKIP_PUSH_PERMISSION_CHECK")}
}

func allowPlatformMismatchFlag() cli.Flag {
	return &cli.BoolFlag{Name: "allow-platform-mismatch", Usage: "build on a base image whose config names another platform than the one built (refused otherwise; recorded in the summary and the metadata file)", EnvVars: envs("ALLOW_PLATFORM_MISMATCH")}
}

// byDigest turns the destinations into their repositories at the image's
// digest: pushed there, the image has no tag (build-all tags the index).
func byDigest(dests []name.Reference, res *builder.Result) ([]name.Reference, error) {
	d, err := res.Image.Digest()
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []name.Reference
	for _, ref := range dests {
		if repo := ref.Context(); !seen[repo.Name()] {
			seen[repo.Name()] = true
			out = append(out, repo.Digest(d.String()))
		}
	}
	return out, nil
}

// ociRefName names the image in an OCI layout output: its first tag, else
// the image's name.
func ociRefName(plan *buildPlan) string {
	for _, d := range plan.dests {
		if t, ok := d.(name.Tag); ok {
			return t.Name()
		}
	}
	return plan.name
}

func tagsOf(refs []name.Reference) []name.Tag {
	var out []name.Tag
	for _, r := range refs {
		if t, ok := r.(name.Tag); ok {
			out = append(out, t)
		}
	}
	return out
}

// buildMetadata is --metadata-file's content.
type buildMetadata struct {
	Image        string   `json:"image"`
	Digest       string   `json:"digest"`
	ConfigDigest string   `json:"config_digest"`
	Platform     string   `json:"platform"`
	Tags         []string `json:"tags"`
	Pushed       bool     `json:"pushed"`
	OCILayout    string   `json:"oci_layout,omitempty"`
	Tarball      string   `json:"tarball,omitempty"`
	Size         int64    `json:"size"`
	// PlatformMismatches: bases built on although their platform is not
	// the image's (--allow-platform-mismatch).
	PlatformMismatches []string `json:"platform_mismatches,omitempty"`
	// LayerCache counts the layer cache's hits and misses (--cache).
	LayerCache *layerCacheSummary `json:"layer_cache,omitempty"`
}

func writeBuildFiles(c *cli.Context, plan *buildPlan, res *builder.Result) error {
	if f := c.String("digest-file"); f != "" {
		if err := writeFileAtomic(f, []byte(res.Digest.String()+"\n")); err != nil {
			return fmt.Errorf("--digest-file: %w", err)
		}
	}
	if err := writeKanikoDigestFiles(c, plan.dests, res.Digest); err != nil {
		return err
	}
	f := c.String("metadata-file")
	if f == "" {
		return nil
	}
	md := buildMetadata{Image: plan.name, Digest: res.Digest.String(), ConfigDigest: res.ConfigDigest.String(),
		Platform: platform.Format(res.Platform), Tags: []string{}, OCILayout: plan.ociDir, Tarball: plan.tarPath, Size: imageSize(res), Pushed: plan.push,
		PlatformMismatches: res.PlatformMismatches, LayerCache: cacheSummary(res)}
	for _, d := range plan.dests {
		md.Tags = append(md.Tags, d.String())
	}
	data, err := json.MarshalIndent(md, "", "  ")
	if err != nil {
		return err
	}
	if f == kube.TerminationPath && len(data) > 4000 && md.LayerCache != nil {
		// A pod's termination message holds 4 KiB: the counts fit, the
		// list of steps may not (the pod's log has every step).
		md.LayerCache.Steps = nil
		if data, err = json.Marshal(md); err != nil {
			return err
		}
	}
	if err := writeFileAtomic(f, append(data, '\n')); err != nil {
		return fmt.Errorf("--metadata-file: %w", err)
	}
	return nil
}

func imageSize(res *builder.Result) int64 {
	m, err := res.Image.Manifest()
	if err != nil {
		return 0
	}
	n := m.Config.Size
	for _, l := range m.Layers {
		n += l.Size
	}
	return n
}

func printBuildSummary(c *cli.Context, plan *buildPlan, res *builder.Result, took time.Duration) {
	w := c.App.Writer
	fmt.Fprintf(w, "built %s for %s: %s (%s) in %.1fs\n", plan.name, platform.Format(res.Platform), res.Digest, manifest.FormatBytes(imageSize(res)), took.Seconds())
	for _, d := range plan.dests {
		if plan.push {
			fmt.Fprintf(w, "  pushed %s\n", d)
		}
	}
	if plan.ociDir != "" {
		fmt.Fprintf(w, "  wrote oci:%s (%s)\n", plan.ociDir, ociRefName(plan))
	}
	if plan.tarPath != "" {
		fmt.Fprintf(w, "  wrote %s (docker load -i %s)\n", plan.tarPath, plan.tarPath)
	}
	for _, m := range res.PlatformMismatches {
		fmt.Fprintf(w, "  WARNING: built on a base of another platform (--allow-platform-mismatch): %s\n", m)
	}
	if len(res.CacheSteps) > 0 {
		h, m := res.CacheHits()
		fmt.Fprintf(w, "  layer cache: %s, %s\n", count(h, "hit", "hits"), count(m, "miss", "misses"))
	}
}

// writeFileAtomic writes data to path through a temporary file and rename.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".kiln-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	err = os.Rename(tmp.Name(), path)
	if errors.Is(err, syscall.EBUSY) {
		// path is a mount point (a pod's /dev/termination-log): it cannot
		// be replaced, only written.
		return os.WriteFile(path, data, 0o644)
	}
	return err
}

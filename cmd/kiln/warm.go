package main

import (
	"fmt"
	"io"
	"time"

	"github.com/urfave/cli/v2"

	"kiln/manifest"
	"kiln/warmer"
)

func warmCommand() *cli.Command {
	return &cli.Command{
		Name:      "warm",
		Usage:     "pre-pull base images for every platform into the shared cache",
		UsageText: "kiln warm [--config build.toml] [--image REF]... [--platform P]... [--refresh] [--prune [--prune-grace D]] [--verify [--repair]]",
		Description: `warm fills the cache folder (an OCI image layout) with the base images of every image in
build.toml — every FROM of every stage, ARGs resolved — plus [warm].extra and --image, for
every platform in [warm].platforms (or --platform; default: the union of the images'
platforms). Blobs are shared between images and platforms and downloaded once.

It is safe to run many at once on one folder (init containers on several pods, the nightly
CronJob) and to kill at any moment: a blob appears whole or not at all. What a failed or
interrupted run was writing is removed before it exits; what a killed one (kill -9) left
is removed by the next run, before it downloads anything. A volume that fills up fails the
run with exit 1 and a message that says so.

Who may use the cache: what warm writes is readable by every user (blobs 0444, index.json
0644, folders 0755), so builds may run as any user and mount the cache read-only. In a
group-writable folder (a Kubernetes fsGroup volume: setgid, group rwx) folders are made
0775 and setgid and files 0664, so warmers sharing that group can all write. Caches from
older kilns (blobs 0600) are made readable in place by the next warm, without downloading.
A user who may not write to the cache may still run warm: it succeeds if the cache holds
everything asked for, and otherwise says whose the cache is and how to share it.

What protects a running build from --prune: the build holds .kiln/use.lock shared, taken on
a read-only descriptor (so also through a read-only mount), and prune waits for it
(--lock-timeout). flock locks the file whatever mount reaches it: this holds on one node and,
on NFS with working locks, across nodes. A build that cannot lock (a read-only cache with
no lock file, a filesystem without flock) says so when it starts; then only --prune-grace
protects it: prune keeps every blob of an entry that left index.json (pruned, or replaced
because its tag moved) less than that long ago. Set it longer than your longest build.

Examples:
   # As an init container: make sure everything the build needs is there (no network if it is)
   kiln warm --config /workspace/build.toml --cache-dir /cache

   # Without a build.toml
   kiln warm --image busybox:1.36 --image alpine:3.20 --platform linux/amd64 --platform linux/arm64

   # As the nightly CronJob: re-check tags older than cache.max_age, pull what moved,
   # and delete what no configured image uses any more
   kiln warm --refresh --prune --report /cache/last-warm.json

   # Check every blob's digest and every reference (no network); exit 1 on damage.
   # Needs only read access: any user, any mount.
   kiln warm --verify --cache-dir /cache

   # Also delete blobs whose content is damaged (the next warm fetches them again)
   # and make every file readable to other users
   kiln warm --verify --repair --cache-dir /cache

A kaniko warmer command line runs unchanged: every flag of kaniko's warmer is accepted, with
kaniko's meaning (see "kaniko compatibility" below). As in kaniko, -c is --cache-dir, -i --image,
-d --dockerfile, -f --force and -v --verbosity.

Exit status: 0 only if every requested (image, platform) is in the cache; 1 if some
failed; 2 for bad flags, build.toml or Dockerfile.`,
		Flags: kanikoShortFlags(append([]cli.Flag{
			configFlag(), allowFSFlag(),
			&cli.StringFlag{Name: "cache-dir", Usage: "the cache folder", DefaultText: "cache.dir of build.toml, else ~/.cache/kiln", EnvVars: envs("CACHE_DIR")},
			&cli.StringSliceFlag{Name: "image", Usage: "also warm this image `REF` (repeatable)", EnvVars: envs("IMAGE")},
			&cli.StringSliceFlag{Name: "platform", Usage: "warm for this platform `P`, e.g. linux/arm64 (repeatable; replaces [warm].platforms)", EnvVars: envs("PLATFORM")},
			&cli.IntFlag{Name: "jobs", Usage: "parallel downloads", DefaultText: "cache.jobs of build.toml, else 8", EnvVars: envs("JOBS")},
			&cli.BoolFlag{Name: "refresh", Usage: "re-check cached tags older than --max-age with a HEAD and pull those that moved", EnvVars: envs("REFRESH")},
			&cli.DurationFlag{Name: "max-age", Usage: "with --refresh: how old an entry may be before it is re-checked", DefaultText: "cache.max_age of build.toml, else 24h", EnvVars: envs("MAX_AGE")},
			&cli.BoolFlag{Name: "prune", Usage: "after warming, drop entries for images no longer configured and delete unreferenced blobs (waits for running builds)", EnvVars: envs("PRUNE")},
			&cli.BoolFlag{Name: "verify", Usage: "only verify the cache: rehash every blob, check every reference; no network", EnvVars: envs("VERIFY")},
			&cli.BoolFlag{Name: "repair", Usage: "with --verify: delete blobs whose content does not match their digest (the next warm fetches them again) and give every file the mode readers need", EnvVars: envs("REPAIR")},
			&cli.BoolFlag{Name: "unpack", Usage: "also fill the layer store (.kiln/unpacked) with every warmed image, so the first build of the day mounts its bases at once (root, where overlay mounts: layers kept unpacked) or unpacks them without fetching or decompressing (elsewhere, e.g. in a pod: uncompressed tars)", EnvVars: envs("UNPACK")},
			layerStoreFlag(),
			&cli.DurationFlag{Name: "cache-ttl", Value: warmer.DefaultLayerCacheTTL, Usage: "with --prune: drop layer cache entries (kiln build --cache) stored longer ago than this; younger ones are kept", DefaultText: "cache.layers_ttl of build.toml, else 336h", EnvVars: envs("CACHE_TTL")},
			&cli.DurationFlag{Name: "prune-grace", Usage: "with --prune: keep the blobs of entries that left the index less than this long ago, for builds that read the cache without its lock (see above)", EnvVars: envs("PRUNE_GRACE")},
			&cli.StringFlag{Name: "report", Usage: "write the results as JSON to `FILE`", EnvVars: envs("REPORT")},
			&cli.DurationFlag{Name: "stall-timeout", Value: 60 * time.Second, Usage: "cut off and resume a transfer that makes no progress for this long", EnvVars: envs("STALL_TIMEOUT")},
			&cli.DurationFlag{Name: "lock-timeout", Value: time.Hour, Usage: "how long --prune waits for builds that use the cache", EnvVars: envs("LOCK_TIMEOUT")},
			progressFlag(),
			logFormatFlag(), verbosityFlag(), logTimestampFlag(),
		}, append(registryFlags(manifest.Pull), kanikoWarmFlags()...)...), kanikoWarmShorts),
		Action:       runWarm,
		OnUsageError: usageError,
	}
}

func runWarm(c *cli.Context) error {
	out, err := newOutput(c)
	if err != nil {
		return cli.Exit(err.Error(), exitUsage)
	}
	notices, err := applyKanikoWarm(c)
	if err != nil {
		return cli.Exit(err.Error(), exitUsage)
	}
	logKanikoNotices(out.log, notices)
	plan, err := planWarm(c)
	if err != nil {
		return cli.Exit(err.Error(), exitUsage)
	}
	client, err := newClient(c, plan.cfg, out.log, manifest.WithStallTimeout(c.Duration("stall-timeout")))
	if err != nil {
		return cli.Exit(err.Error(), exitUsage)
	}
	if c.Bool("repair") && !c.Bool("verify") {
		return cli.Exit("--repair goes with --verify (a plain warm repairs file modes by itself)", exitUsage)
	}
	if c.Bool("unpack") || c.Bool("prune") || c.Bool("verify") {
		// The layer store of a rootless user is its user namespace's
		// (builds run there): fill, report and prune that one.
		if err := ownUserNamespace(c, plan.cacheDir, out.log); err != nil {
			return err
		}
	}
	ttl := c.Duration("cache-ttl")
	if !c.IsSet("cache-ttl") && plan.layerTTL > 0 {
		ttl = plan.layerTTL
	}
	opts := []warmer.Option{warmer.WithJobs(plan.jobs), warmer.WithClient(client), warmer.WithLogger(out.log), warmer.WithPruneGrace(c.Duration("prune-grace")),
		warmer.WithLayerCacheTTL(ttl)}
	if c.Bool("refresh") {
		opts = append(opts, warmer.WithRefresh(plan.maxAge))
	}
	if out.live != nil {
		opts = append(opts, warmer.WithProgress(out.live.event))
	}
	w, err := warmer.New(plan.cacheDir, opts...)
	if err != nil {
		return cli.Exit(err.Error(), exitUsage)
	}
	if c.Bool("verify") {
		return runVerify(c, w, out)
	}
	if len(plan.items) == 0 {
		if c.Bool("prune") {
			return cli.Exit("refusing to prune: nothing configured to keep (no base images, no [warm].extra, no --image)", exitUsage)
		}
		if plan.images > 0 {
			fmt.Fprintf(c.App.Writer, "nothing to warm: the %s in %s need no base image (FROM scratch only) and there is no [warm].extra or --image\n", count(plan.images, "image", "images"), c.String("config"))
			return nil
		}
		return cli.Exit("nothing to warm: no build.toml images, no [warm].extra, no --image (see kiln warm --help)", exitUsage)
	}
	out.log.Info("warm starting", "cache", plan.cacheDir, "images", plan.refCount(), "platforms", plan.platformList(), "jobs", plan.jobs, "refresh", c.Bool("refresh"))
	out.start()
	rep, err := w.Warm(c.Context, plan.items)
	out.stop()
	if err != nil && rep == nil {
		return cli.Exit(err.Error(), exitFailed)
	}
	if c.Bool("prune") && err == nil {
		if rep.Pruned, err = prune(c, w, plan); err != nil {
			err = fmt.Errorf("prune: %w", err)
		}
	}
	var storeLine string
	if c.Bool("prune") && err == nil {
		n, bytes, perr := pruneLayerStore(c.Context, plan.cacheDir, out.log)
		if perr != nil {
			err = fmt.Errorf("prune of the layer store: %w", perr)
		} else if n > 0 {
			storeLine = fmt.Sprintf("layer store: dropped %s no cached image uses (%s)\n", count(n, "stored layer", "stored layers"), manifest.FormatBytes(bytes))
		}
	}
	if c.Bool("unpack") && err == nil && rep.OK() {
		n, unpacked, uerr := unpackWarmed(c, plan.cacheDir, plan.items, out.log)
		if uerr != nil {
			err = uerr
		} else {
			storeLine += fmt.Sprintf("layer store: %s stored now, %s of %s already were\n", count(unpacked, "layer", "layers"), count(n-unpacked, "layer", "layers"), count(n, "warmed layer", "warmed layers"))
		}
	}
	printWarmSummary(c.App.Writer, rep)
	fmt.Fprint(c.App.Writer, storeLine)
	if rerr := writeReport(c.String("report"), rep); rerr != nil && err == nil {
		err = rerr
	}
	if err != nil {
		return cli.Exit(err.Error(), exitFailed)
	}
	if !rep.OK() {
		msg := fmt.Sprintf("%d of %d (image, platform) pairs are not in the cache", rep.Counts[warmer.StatusFailed], len(rep.Results))
		if rep.DiskFull != "" {
			msg += ", which is out of space: " + rep.DiskFull
		}
		return cli.Exit(msg, exitFailed)
	}
	return nil
}

func prune(c *cli.Context, w *warmer.Warmer, plan *warmPlan) (*warmer.PruneReport, error) {
	keep := plan.refs()
	if len(keep) == 0 {
		return nil, fmt.Errorf("refusing to prune: no configured images to keep")
	}
	ctx := c.Context
	if d := c.Duration("lock-timeout"); d > 0 {
		var cancel func()
		ctx, cancel = contextWithTimeout(ctx, d)
		defer cancel()
	}
	return w.Prune(ctx, keep)
}

func runVerify(c *cli.Context, w *warmer.Warmer, out *output) error {
	var opts []warmer.VerifyOption
	if c.Bool("repair") {
		opts = append(opts, warmer.WithRepair())
	}
	vr, err := w.Verify(c.Context, opts...)
	if err != nil {
		return cli.Exit(fmt.Sprintf("verify: %v", err), exitFailed)
	}
	printVerifySummary(c.App.Writer, w.Dir(), vr)
	printLayerStore(c.App.Writer, w.Dir())
	printRepairSummary(c.App.Writer, vr)
	if rerr := writeReport(c.String("report"), &warmer.Report{CacheDir: w.Dir(), Verify: vr, Counts: map[warmer.Status]int{}}); rerr != nil {
		return cli.Exit(rerr.Error(), exitFailed)
	}
	if !vr.OK() {
		msg := fmt.Sprintf("cache %s is damaged: %s", w.Dir(), count(len(vr.Problems), "problem", "problems"))
		switch {
		case vr.Repair != nil && vr.Repair.Removed > 0:
			msg += fmt.Sprintf("; %d damaged blobs were removed: run kiln warm to fetch them again", vr.Repair.Removed)
		case vr.Repair == nil:
			msg += " (kiln warm --verify --repair removes damaged blobs, so that the next kiln warm fetches them again)"
		}
		return cli.Exit(msg, exitFailed)
	}
	return nil
}

// printRepairSummary adds what --repair changed, and blobs other users
// cannot read, to the verify summary.
func printRepairSummary(w io.Writer, vr *warmer.VerifyReport) {
	if r := vr.Repair; r != nil {
		fmt.Fprintf(w, "repaired: removed %d damaged blobs, fixed the modes of %d files\n", r.Removed, r.Modes)
		for _, f := range r.ModeFailures {
			fmt.Fprintf(w, "  could not make readable: %s\n", f)
		}
		return
	}
	if vr.Private > 0 {
		fmt.Fprintf(w, "%s readable by their owner only (written by an older kiln): builds running as other users fail on them; kiln warm, or kiln warm --verify --repair, makes them readable\n", count(vr.Private, "blob is", "blobs are"))
	}
}

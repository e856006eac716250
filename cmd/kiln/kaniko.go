package main

// kiln build and kiln warm accept every flag of kaniko's executor and warmer
// (v1.24, the last release, and the maintained forks' additions), with
// kaniko's meaning, so that a kaniko pod spec runs with kiln's image and its
// args unchanged. A kaniko flag is one of:
//   - kiln's own flag of the same name and meaning (--destination, --cache);
//   - a kaniko name for a kiln flag (--custom-platform is --platform): set on
//     that flag here, before the command reads it, and refused when both are
//     given and disagree;
//   - kaniko behaviour kiln implements (--ignore-path here;
//     --image-name-with-digest-file and the like in kaniko_image.go; the
//     warmer's --dockerfile in kaniko_warm.go);
//   - a flag with no meaning for kiln: accepted, and one log line says why.
// README.md's "Switching from kaniko" lists them all.

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"kiln/builder"
	"kiln/manifest"
)

// kanikoCategory groups the kaniko-only flags in --help.
const kanikoCategory = "kaniko compatibility (kiln's equivalents above)"

// kaniko's one-letter flags. -c is --context for the executor and
// --cache-dir for the warmer, so in kiln build and kiln warm --config has no
// short form (it keeps -c in the commands kaniko does not have).
var (
	kanikoBuildShorts = map[string]string{"context": "c", "dockerfile": "f", "destination": "d", "verbosity": "v", "bucket": "b"}
	kanikoWarmShorts  = map[string]string{"cache-dir": "c", "image": "i", "force": "f", "dockerfile": "d", "verbosity": "v"}
)

// kanikoNotices are the kaniko flags that mean nothing for kiln, and why:
// accepted so that a kaniko command line runs unchanged, and named in the log.
var kanikoNotices = map[string]string{
	"single-snapshot":    "kiln writes a layer per step, as docker does, and snapshots only after RUN (with --snapshot overlay a step costs what it wrote, no scan)",
	"compressed-caching": "kiln compresses each layer once, into a file, never in memory",
	"cleanup":            "kiln builds in a work folder it removes; only --isolation container replaces /, and the next build replaces it again",
	"pre-cleanup":        "every kiln build starts from the base image in a fresh work folder",
	"skip-unused-stages": "kiln always builds only the stages the target needs",
	"use-new-run":        "kiln finds a RUN step's changes its own way, --snapshot: overlay (what the step wrote, no scan) or walk (a stat comparison)",
	"force-build-metadata": "kiln records every instruction in the image history, as docker does; " +
		"metadata-only instructions add no layer",
	"preserve-context": "kiln never changes the build context between stages",
	"materialize":      "kiln's result is the image it pushes or writes; the filesystem it builds in is its own, not one for later commands",
	"credential-helpers": "kiln takes credentials from the Docker config ($DOCKER_CONFIG/config.json): auths, credHelpers and credsStore; " +
		"name a helper there",
	"azure-container-registry-config": "kiln takes credentials from the Docker config; for ACR name docker-credential-acr-env in its credHelpers",
}

// kanikoBuildFlags are the executor's flags kiln build does not have under
// the same name.
func kanikoBuildFlags() []cli.Flag {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "custom-platform", Aliases: []string{"customPlatform"}, Usage: "kaniko's name for --platform"},
		&cli.StringFlag{Name: "oci-layout-path", Usage: "kaniko's name for --output oci:`DIR`"},
		&cli.StringFlag{Name: "tarPath", Usage: "kaniko's old name for --tar-path", Hidden: true},
		&cli.StringFlag{Name: "kaniko-dir", Usage: "kaniko's name for --work-dir (made if missing)", EnvVars: []string{"KILN_KANIKO_DIR", "KANIKO_DIR"}},
		&cli.IntFlag{Name: "push-retry", Usage: "retries of each push: --retries N+1 where that is more than kiln's default"},
		&cli.IntFlag{Name: "image-download-retry", Usage: "retries of each registry request for a base image, where more than kiln's default (6)"},
		&cli.IntFlag{Name: "image-fs-extract-retry", Usage: "as --image-download-retry; a layer whose download breaks off while it is unpacked is not unpacked again (kiln warm first: cached layers are local files)"},
		&cli.StringFlag{Name: "snapshot-mode", Aliases: []string{"snapshotMode"}, Usage: "full, redo or time: accepted; --snapshot says how kiln finds changes, and both of its ways see every change redo sees"},
		&cli.StringFlag{Name: "image-name-with-digest-file", Usage: "write REPOSITORY@DIGEST of each destination to `FILE`, one a line (or PUT it to an https:// URL)"},
		&cli.StringFlag{Name: "image-name-tag-with-digest-file", Usage: "write REPOSITORY:TAG@DIGEST of each destination to `FILE`, one a line (or PUT it to an https:// URL)"},
		&cli.BoolFlag{Name: "push-ignore-immutable-tag-errors", Usage: "a destination whose tag the registry keeps immutable (ECR, Artifact Registry) is skipped, not a failure"},
		&cli.BoolFlag{Name: "no-push-cache", Usage: "with --cache: look layers up in the --cache-repo registry but push none there"},
		&cli.StringSliceFlag{Name: "ignore-path", Usage: "leave changes under this container `PATH` out of RUN layers (repeatable)"},
		&cli.BoolFlag{Name: "ignore-var-run", Aliases: []string{"whitelist-var-run"}, Usage: "leave changes under /var/run out of RUN layers (kaniko's default; kiln's is docker's: keep them)"},
		&cli.StringSliceFlag{Name: "annotation", Usage: "add an annotation `K=V` to the image manifest (repeatable)"},
		&cli.StringFlag{Name: "image-format", Usage: "the image's media types: docker or oci (default: those of the base image)"},
		&cli.StringFlag{Name: "compression", Usage: "gzip (kiln's layers are gzip; zstd is accepted and gives gzip, with a warning)"},
		&cli.IntFlag{Name: "compression-level", Value: -1, Usage: "the layers' gzip level, 0 (none) to 9 (best); -1: the default"},
		&cli.BoolFlag{Name: "dryrun", Usage: "print what would be built, from what, and where it would go; build and push nothing"},
		&cli.StringFlag{Name: "bucket", Usage: "refused, as gs:// contexts are: kiln links no cloud SDK; copy the tarball first and give --context tar://PATH, or an https:// (signed) URL"},
	}
	for _, name := range sortedKeys(kanikoNotices) {
		flags = append(flags, kanikoNoticeFlag(name))
	}
	for _, f := range flags {
		withEnv(f) // KILN_<FLAG>, as every kiln flag
	}
	return inCategory(flags)
}

// withEnv gives a visible flag with no environment variable KILN_<FLAG>.
// kiln warm's kaniko flags get none: KILN_FORCE, KILN_DOCKERFILE and
// KILN_BUILD_ARG are kiln build's, and set for builds they must not change
// what a warm in the same environment does.
func withEnv(f cli.Flag) {
	env := envs(strings.ToUpper(strings.ReplaceAll(f.Names()[0], "-", "_")))
	switch f := f.(type) {
	case *cli.StringFlag:
		if !f.Hidden && f.EnvVars == nil {
			f.EnvVars = env
		}
	case *cli.StringSliceFlag:
		if f.EnvVars == nil {
			f.EnvVars = env
		}
	case *cli.BoolFlag:
		if f.EnvVars == nil {
			f.EnvVars = env
		}
	case *cli.IntFlag:
		if f.EnvVars == nil {
			f.EnvVars = env
		}
	}
}

// kanikoNoticeFlag is a flag that means nothing for kiln, of kaniko's type.
func kanikoNoticeFlag(name string) cli.Flag {
	usage := "accepted: " + kanikoNotices[name]
	switch name {
	case "credential-helpers":
		return &cli.StringSliceFlag{Name: name, Usage: usage}
	case "azure-container-registry-config":
		return &cli.StringFlag{Name: name, Usage: usage}
	}
	return &cli.BoolFlag{Name: name, Usage: usage, Value: name == "compressed-caching"}
}

func inCategory(flags []cli.Flag) []cli.Flag {
	for _, f := range flags {
		switch f := f.(type) {
		case *cli.StringFlag:
			f.Category = kanikoCategory
		case *cli.StringSliceFlag:
			f.Category = kanikoCategory
		case *cli.BoolFlag:
			f.Category = kanikoCategory
		case *cli.IntFlag:
			f.Category = kanikoCategory
		}
	}
	return flags
}

// kanikoShortFlags gives a command's flags kaniko's one-letter names; a
// letter kiln gave another flag (-c to --config) is taken from it.
func kanikoShortFlags(flags []cli.Flag, shorts map[string]string) []cli.Flag {
	letters := map[string]bool{}
	for _, l := range shorts {
		letters[l] = true
	}
	fix := func(name string, aliases []string) []string {
		aliases = slices.DeleteFunc(slices.Clone(aliases), func(a string) bool { return letters[a] })
		if l, ok := shorts[name]; ok {
			aliases = append(aliases, l)
		}
		return aliases
	}
	for _, f := range flags {
		switch f := f.(type) {
		case *cli.StringFlag:
			f.Aliases = fix(f.Name, f.Aliases)
		case *cli.StringSliceFlag:
			f.Aliases = fix(f.Name, f.Aliases)
		case *cli.BoolFlag:
			f.Aliases = fix(f.Name, f.Aliases)
		}
	}
	return flags
}

// kanikoNotice is one line of the log about a kaniko flag.
type kanikoNotice struct {
	flag  string
	note  string
	level slog.Level
}

func logKanikoNotices(log *slog.Logger, notices []kanikoNotice) {
	for _, n := range notices {
		log.Log(context.Background(), n.level, "kaniko flag", "flag", "--"+n.flag, "kiln", n.note)
	}
}

// applyKanikoBuild sets kiln build's flags from their kaniko names and
// checks the kaniko flags' values; what is left for the log is returned.
func applyKanikoBuild(c *cli.Context) ([]kanikoNotice, error) {
	var notices []kanikoNotice
	note := func(flag, msg string, level slog.Level) {
		notices = append(notices, kanikoNotice{flag: flag, note: msg, level: level})
	}
	if c.IsSet("bucket") {
		return nil, fmt.Errorf("--bucket %s: kiln reads no GCS bucket (it links no cloud SDK): copy the context tarball first (gsutil cp in an init container) and give --context tar://PATH, or give a signed https:// URL", c.String("bucket"))
	}
	if err := kanikoRename(c, "custom-platform", "platform", ""); err != nil {
		return nil, err
	}
	if err := kanikoRename(c, "oci-layout-path", "output", "oci:"); err != nil {
		return nil, err
	}
	if err := kanikoRename(c, "tarPath", "tar-path", ""); err != nil {
		return nil, err
	}
	if err := kanikoWorkDir(c); err != nil {
		return nil, err
	}
	if c.IsSet("push-retry") && !c.IsSet("retries") {
		n := c.Int("push-retry")
		if n < 0 {
			return nil, fmt.Errorf("--push-retry %d: want 0 or more", n)
		}
		if n+1 > c.Int("retries") {
			if err := c.Set("retries", strconv.Itoa(n+1)); err != nil {
				return nil, err
			}
		}
	}
	for _, f := range []string{"image-download-retry", "image-fs-extract-retry"} {
		if c.Int(f) < 0 {
			return nil, fmt.Errorf("--%s %d: want 0 or more", f, c.Int(f))
		}
	}
	if c.IsSet("snapshot-mode") {
		switch m := c.String("snapshot-mode"); m {
		case "full", "redo", "time":
			note("snapshot-mode", fmt.Sprintf("%s: kiln finds changes by --snapshot %s (overlay: exactly what the step wrote; walk: size, mode, owner, mtime, ctime, inode)", m, c.String("snapshot")), slog.LevelInfo)
		default:
			return nil, fmt.Errorf("--snapshot-mode %q: want full, redo or time", m)
		}
	}
	if t := c.String("target"); strings.Contains(t, ",") {
		first, _, _ := strings.Cut(t, ",")
		if err := c.Set("target", first); err != nil {
			return nil, err
		}
		note("target", fmt.Sprintf("%s: kiln builds the first target, %s, and the stages it needs; the others are not built", t, first), slog.LevelWarn)
	}
	if v, ok := os.LookupEnv("KANIKO_NO_PUSH"); ok && !c.IsSet("no-push") {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("KANIKO_NO_PUSH=%q: want true or false", v)
		}
		if err := c.Set("no-push", strconv.FormatBool(b)); err != nil {
			return nil, err
		}
	}
	n, err := kanikoImageChecks(c)
	if err != nil {
		return nil, err
	}
	notices = append(notices, n...)
	for _, name := range sortedKeys(kanikoNotices) {
		if c.IsSet(name) {
			note(name, "accepted, nothing to do: "+kanikoNotices[name], slog.LevelInfo)
		}
	}
	return notices, nil
}

// kanikoRename sets kiln's flag to kaniko's value (prefix+value): both
// given and different is a usage error.
func kanikoRename(c *cli.Context, kaniko, kiln, prefix string) error {
	if !c.IsSet(kaniko) {
		return nil
	}
	v := prefix + c.String(kaniko)
	if c.IsSet(kiln) && c.String(kiln) != v {
		return fmt.Errorf("--%s %s and --%s %s disagree (the first is kaniko's name for the second)", kaniko, c.String(kaniko), kiln, c.String(kiln))
	}
	return c.Set(kiln, v)
}

// kanikoWorkDir: --kaniko-dir (or $KANIKO_DIR) is the work folder, made
// if missing as kaniko makes its own.
func kanikoWorkDir(c *cli.Context) error {
	if !c.IsSet("kaniko-dir") || c.String("kaniko-dir") == "" {
		return nil
	}
	if err := kanikoRename(c, "kaniko-dir", "work-dir", ""); err != nil {
		return err
	}
	if err := os.MkdirAll(c.String("work-dir"), 0o755); err != nil {
		return fmt.Errorf("--kaniko-dir: %w", err)
	}
	return nil
}

// kanikoImageChecks checks the flags kaniko_image.go acts on.
func kanikoImageChecks(c *cli.Context) ([]kanikoNotice, error) {
	var notices []kanikoNotice
	switch f := c.String("compression"); f {
	case "", "gzip":
	case "zstd":
		notices = append(notices, kanikoNotice{flag: "compression", note: "zstd: kiln writes gzip layers, which every runtime reads", level: slog.LevelWarn})
	default:
		return nil, fmt.Errorf("--compression %q: want gzip or zstd", f)
	}
	if l := c.Int("compression-level"); l < -1 || l > 9 {
		return nil, fmt.Errorf("--compression-level %d: want 0 (none) to 9 (best), or -1 for the default", l)
	}
	switch f := c.String("image-format"); f {
	case "", "docker", "oci":
	default:
		return nil, fmt.Errorf("--image-format %q: want docker or oci", f)
	}
	if _, err := kanikoAnnotations(c); err != nil {
		return nil, err
	}
	for _, p := range c.StringSlice("ignore-path") {
		if !path.IsAbs(p) {
			return nil, fmt.Errorf("--ignore-path %q: want an absolute path in the image", p)
		}
	}
	if (c.String("image-name-with-digest-file") != "" || c.String("image-name-tag-with-digest-file") != "") &&
		!c.IsSet("destination") && c.Args().Len() == 0 {
		return nil, fmt.Errorf("--image-name-with-digest-file and --image-name-tag-with-digest-file name the destinations: give --destination")
	}
	return notices, nil
}

// kanikoBuilderOptions are the builder options kaniko's flags ask for.
func kanikoBuilderOptions(c *cli.Context) []builder.Option {
	var opts []builder.Option
	var exclude []string
	for _, p := range c.StringSlice("ignore-path") {
		exclude = append(exclude, path.Clean(p))
	}
	if c.Bool("ignore-var-run") {
		exclude = append(exclude, "/var/run")
	}
	if len(exclude) > 0 {
		opts = append(opts, builder.WithRunExclude(exclude...))
	}
	if c.IsSet("compression-level") {
		opts = append(opts, builder.WithCompressionLevel(c.Int("compression-level")))
	}
	return opts
}

// kanikoClientOptions: kaniko's download retries, where they ask for more
// tries than kiln makes anyway.
func kanikoClientOptions(c *cli.Context) []manifest.ClientOption {
	tries := max(c.Int("image-download-retry"), c.Int("image-fs-extract-retry")) + 1
	if tries <= manifest.DefaultBackoff.Attempts {
		return nil
	}
	b := manifest.DefaultBackoff
	b.Attempts = tries
	return []manifest.ClientOption{manifest.WithBackoff(b)}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

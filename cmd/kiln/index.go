package main

import (
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	specs "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/urfave/cli/v2"

	"kiln/config"
	"kiln/manifest"
	"kiln/platform"
)

func indexCommand() *cli.Command {
	return &cli.Command{
		Name:         "index",
		Usage:        "make multi-platform images out of existing single-platform ones",
		UsageText:    "kiln index create --tag REF [--tag REF]... SOURCE...",
		Subcommands:  []*cli.Command{indexCreateCommand()},
		OnUsageError: usageError,
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return cli.Exit(fmt.Sprintf("kiln index has no command %q (see kiln index --help)", c.Args().First()), exitUsage)
			}
			return cli.ShowSubcommandHelp(c)
		},
	}
}

func indexCreateCommand() *cli.Command {
	annotations, descAnnotations := &indexKVs{}, &indexKVs{}
	return &cli.Command{
		Name:      "create",
		Usage:     "stitch existing images into one OCI image index (or Docker manifest list) and push it",
		UsageText: "kiln index create --tag REF [--tag REF]... [--annotation K=V]... [--descriptor-annotation PLATFORM=K=V]... [--format oci|docker] [--platform P]... [--output oci:DIR] SOURCE...",
		Description: `create makes one multi-platform image out of images that are already in a registry, as
` + "`crane index append`" + ` and manifest-tool do. Each SOURCE is a tag or digest reference, in any
repository; a SOURCE that is itself an index contributes each of its platform images
(attestation manifests are left out).

Each child's platform is read from its image config, and checked against what a source
index claims for it; two children of one platform are an error. Children are ordered by
platform, then digest, so the same sources always give the same index digest.

The index is pushed to every --tag, each child first by digest into the tag's repository;
its blobs are mounted from the source repository where the registry allows, so nothing
is downloaded. --output also writes the index and its images into an OCI layout (that
does download them).

--format docker makes a Docker manifest list for older tools: every child must then be a
Docker schema 2 manifest (kiln does not convert images: that would change their digests)
and there can be no annotations.

Examples:
   # Two single-platform builds in different repositories, one tag for both
   kiln index create --tag registry.example.com/acme/api:1.4.2 \
       registry.example.com/ci/api-amd64:1.4.2 \
       registry.example.com/ci/api-arm64@sha256:4f1c...

   # Add arm/v7 to an existing multi-platform image, under two tags
   kiln index create -t registry.example.com/acme/api:1.4.2 -t registry.example.com/acme/api:latest \
       registry.example.com/acme/api:1.4.1 registry.example.com/ci/api-armv7:1.4.2

   # Keep only two platforms of an upstream image, annotated
   kiln index create -t registry.example.com/mirror/busybox:1.36 --platform linux/amd64 --platform linux/arm64 \
       --annotation org.opencontainers.image.source=https://github.com/acme/api \
       --descriptor-annotation 'linux/arm64=org.opencontainers.image.description=arm64 build' \
       busybox:1.36

   # A Docker manifest list, and an OCI layout copy, no push
   kiln index create --format docker --output oci:out/api registry.example.com/ci/api-amd64:1 registry.example.com/ci/api-arm64:1

Exit status: 0 if the index was pushed to every tag (and written); 1 if a source could not
be read, the sources do not make an index (platform mismatch, duplicate platform, wrong
media type for the format) or a push failed; 2 for bad flags.`,
		ArgsUsage: "SOURCE...",
		Flags: append([]cli.Flag{
			&cli.StringSliceFlag{Name: "tag", Aliases: []string{"t"}, Usage: "push the index to this `REF` (repeatable)", EnvVars: envs("TAG")},
			&cli.GenericFlag{Name: "annotation", Value: annotations, Usage: "annotate the index, `K=V` (repeatable; in the environment, one per line)", EnvVars: envs("ANNOTATION")},
			&cli.GenericFlag{Name: "descriptor-annotation", Value: descAnnotations, Usage: "annotate the descriptor of one platform's image, `PLATFORM=K=V`, or of every image, '*=K=V' (repeatable; in the environment, one per line)", EnvVars: envs("DESCRIPTOR_ANNOTATION")},
			&cli.StringFlag{Name: "format", Value: string(manifest.FormatOCI), Usage: "the index `FORMAT`: oci (an OCI image index) or docker (a Docker manifest list)", EnvVars: envs("FORMAT")},
			&cli.StringSliceFlag{Name: "platform", Usage: "keep only this platform `P` of the sources (repeatable; default: every one)", EnvVars: envs("PLATFORM")},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "also write the index and its images as an OCI layout: oci:`DIR`", EnvVars: envs("OUTPUT")},
			&cli.StringFlag{Name: "digest-file", Usage: "write the index digest to `FILE`", EnvVars: envs("DIGEST_FILE")},
			configFlag(), allowFSFlag(),
			logFormatFlag(), verbosityFlag(), logTimestampFlag(),
		}, append(retryFlags(), registryFlags(manifest.Pull|manifest.Push)...)...),
		Action: func(c *cli.Context) error {
			return runIndexCreate(c, annotations.list, descAnnotations.list)
		},
		OnUsageError: indexUsageError,
	}
}

// indexUsageError is usageError with the subcommand's full name.
func indexUsageError(c *cli.Context, err error, _ bool) error {
	return cli.Exit(fmt.Sprintf("%v (see kiln index create --help)", err), exitUsage)
}

// indexKVs collects a repeatable K=V flag without splitting values at
// commas, as cli.StringSliceFlag would: annotation values are prose.
type indexKVs struct{ list []string }

func (v *indexKVs) Set(s string) error {
	v.list = append(v.list, strings.Split(strings.TrimRight(s, "\n"), "\n")...)
	return nil
}

func (v *indexKVs) String() string { return "" }

// indexRequest is the flags of `kiln index create`, checked.
type indexRequest struct {
	sources     []string
	rawTags     []string
	tags        []name.Reference // parsed by indexParseRefs
	format      manifest.IndexFormat
	annotations map[string]string
	descAnns    []indexDescAnnotation
	platforms   []specs.Platform
	ociDir      string
	digestFile  string
	cfg         *config.Config // build.toml, nil if none: its [registries]
}

// indexDescAnnotation is one --descriptor-annotation.
type indexDescAnnotation struct {
	flag     string
	all      bool
	platform specs.Platform
	key, val string
}

func runIndexCreate(c *cli.Context, annotations, descAnnotations []string) error {
	log, err := indexLogger(c)
	if err != nil {
		return cli.Exit(err.Error(), exitUsage)
	}
	req, err := indexFlags(c, annotations, descAnnotations)
	if err != nil {
		return cli.Exit(err.Error(), exitUsage)
	}
	client, err := newClient(c, req.cfg, log)
	if err != nil {
		return cli.Exit(err.Error(), exitUsage)
	}
	refs, err := indexParseRefs(client, req)
	if err != nil {
		return cli.Exit(err.Error(), exitUsage)
	}
	log.Info("resolving sources", "sources", len(req.sources))
	entries, err := client.IndexEntries(c.Context, refs...)
	if err != nil {
		return cli.Exit(err.Error(), exitFailed)
	}
	for i := range entries {
		entries[i].Source = indexSourceOf(entries[i], refs, req.sources)
	}
	if entries, err = indexSelect(entries, req); err != nil {
		return cli.Exit(err.Error(), exitFailed)
	}
	idx, err := manifest.BuildIndex(entries, req.format, req.annotations)
	if err != nil {
		return cli.Exit(err.Error(), exitFailed)
	}
	if err := indexWrite(c, client, log, idx, req); err != nil {
		return cli.Exit(err.Error(), exitFailed)
	}
	return indexPrint(c.App.Writer, idx, entries, req)
}

func indexLogger(c *cli.Context) (*slog.Logger, error) {
	w := c.App.ErrWriter
	if w == nil {
		w = os.Stderr
	}
	lo, err := logOptionsOf(c)
	if err != nil {
		return nil, err
	}
	return lo.logger(w), nil
}

// indexFlags checks the flags; references are parsed later, with the
// client that knows which registries are insecure.
func indexFlags(c *cli.Context, annotations, descAnnotations []string) (*indexRequest, error) {
	req := &indexRequest{sources: c.Args().Slice(), digestFile: c.String("digest-file")}
	if len(req.sources) == 0 {
		return nil, fmt.Errorf("no SOURCE: name the images to put in the index (see kiln index create --help)")
	}
	var err error
	if req.format, err = manifest.ParseIndexFormat(c.String("format")); err != nil {
		return nil, fmt.Errorf("--format: %w", err)
	}
	if req.annotations, err = indexAnnotations(annotations); err != nil {
		return nil, err
	}
	if req.descAnns, err = indexDescAnnotations(descAnnotations); err != nil {
		return nil, err
	}
	if ps := c.StringSlice("platform"); len(ps) > 0 {
		if req.platforms, err = platform.ParseAll(splitCommas(ps)); err != nil {
			return nil, fmt.Errorf("--platform: %w", err)
		}
	}
	if c.IsSet("output") {
		dir, ok := strings.CutPrefix(c.String("output"), "oci:")
		if !ok || dir == "" {
			return nil, fmt.Errorf("--output: want oci:DIR, got %q", c.String("output"))
		}
		req.ociDir = dir
	}
	req.rawTags = splitCommas(c.StringSlice("tag"))
	if len(req.rawTags) == 0 && req.ociDir == "" {
		return nil, fmt.Errorf("nowhere to put the index: give --tag REF or --output oci:DIR")
	}
	if req.cfg, err = loadConfig(c); err != nil {
		return nil, err
	}
	return req, nil
}

func indexAnnotations(kvs []string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--annotation %q: want KEY=VALUE", kv)
		}
		out[k] = v
	}
	return out, nil
}

func indexDescAnnotations(flags []string) ([]indexDescAnnotation, error) {
	var out []indexDescAnnotation
	for _, f := range flags {
		sel, kv, _ := strings.Cut(f, "=")
		k, v, ok := strings.Cut(kv, "=")
		if !ok || sel == "" || k == "" {
			return nil, fmt.Errorf("--descriptor-annotation %q: want PLATFORM=KEY=VALUE or *=KEY=VALUE", f)
		}
		a := indexDescAnnotation{flag: f, all: sel == "*", key: k, val: v}
		if !a.all {
			p, err := platform.Parse(sel)
			if err != nil {
				return nil, fmt.Errorf("--descriptor-annotation %q: %w", f, err)
			}
			a.platform = p
		}
		out = append(out, a)
	}
	return out, nil
}

// indexParseRefs parses the sources and the tags (which must be tags).
func indexParseRefs(client *manifest.Client, req *indexRequest) ([]name.Reference, error) {
	refs := make([]name.Reference, len(req.sources))
	for i, s := range req.sources {
		ref, err := client.ParseReference(s)
		if err != nil {
			return nil, fmt.Errorf("SOURCE %q: %w", s, err)
		}
		refs[i] = ref
	}
	for _, s := range req.rawTags {
		ref, err := client.ParseReference(s)
		if err != nil {
			return nil, fmt.Errorf("--tag %q: %w", s, err)
		}
		if _, ok := ref.(name.Tag); !ok {
			return nil, fmt.Errorf("--tag %q: want a tag, not a digest", s)
		}
		req.tags = append(req.tags, ref)
	}
	return refs, nil
}

// indexSourceOf names an entry by the SOURCE as the user wrote it.
func indexSourceOf(e manifest.IndexEntry, refs []name.Reference, sources []string) string {
	for i, r := range refs {
		if r.String() == e.Source {
			return sources[i]
		}
	}
	return e.Source
}

// indexSelect keeps the --platform images (every one must be there) and
// puts the --descriptor-annotation annotations on them (every platform named
// must be among those kept).
func indexSelect(entries []manifest.IndexEntry, req *indexRequest) ([]manifest.IndexEntry, error) {
	var kept []manifest.IndexEntry
	var plats, all []specs.Platform
	for _, e := range entries {
		cf, err := e.Image.ConfigFile()
		if err != nil {
			return nil, fmt.Errorf("reading the config of %s: %w", e.Source, err)
		}
		p := platform.FromV1(cf.Platform())
		all = append(all, p)
		if len(req.platforms) == 0 || containsPlatform(req.platforms, p) {
			kept, plats = append(kept, e), append(plats, p)
		}
	}
	for _, want := range req.platforms {
		if !containsPlatform(plats, want) {
			return nil, fmt.Errorf("--platform %s: no source has it (they have %s)", platform.Format(want), platform.FormatAll(all))
		}
	}
	for _, a := range req.descAnns {
		if !a.all && !containsPlatform(plats, a.platform) {
			return nil, fmt.Errorf("--descriptor-annotation %q: the index has no %s (it has %s)", a.flag, platform.Format(a.platform), platform.FormatAll(plats))
		}
	}
	for i := range kept {
		for _, a := range req.descAnns {
			if a.all || platform.Equal(a.platform, plats[i]) {
				kept[i].Annotations = maps.Clone(kept[i].Annotations)
				if kept[i].Annotations == nil {
					kept[i].Annotations = map[string]string{}
				}
				kept[i].Annotations[a.key] = a.val
			}
		}
	}
	return kept, nil
}

// indexWrite pushes the index to every tag and writes --output and
// --digest-file.
func indexWrite(c *cli.Context, client *manifest.Client, log *slog.Logger, idx v1.ImageIndex, req *indexRequest) error {
	if len(req.tags) > 0 {
		log.Info("pushing index", "tags", len(req.tags))
		if _, err := client.PushIndex(c.Context, idx, req.tags); err != nil {
			return err
		}
	}
	if req.ociDir != "" {
		l, err := manifest.OpenLayout(req.ociDir)
		if err != nil {
			return fmt.Errorf("--output oci:%s: %w", req.ociDir, err)
		}
		log.Info("writing index and images", "output", "oci:"+req.ociDir)
		if _, err := l.WriteIndex(c.Context, idx, indexRefName(req)); err != nil {
			return fmt.Errorf("writing oci:%s: %w", req.ociDir, err)
		}
	}
	if req.digestFile != "" {
		h, err := idx.Digest()
		if err != nil {
			return err
		}
		if err := os.WriteFile(req.digestFile, []byte(h.String()+"\n"), 0o644); err != nil {
			return fmt.Errorf("--digest-file: %w", err)
		}
	}
	return nil
}

// indexRefName names the index in an OCI layout: its first tag, else
// "latest".
func indexRefName(req *indexRequest) string {
	if len(req.tags) > 0 {
		return req.tags[0].Name()
	}
	return "latest"
}

// indexPrint writes the children table and where the index went.
func indexPrint(w io.Writer, idx v1.ImageIndex, entries []manifest.IndexEntry, req *indexRequest) error {
	im, err := idx.IndexManifest()
	if err != nil {
		return cli.Exit(err.Error(), exitFailed)
	}
	h, err := idx.Digest()
	if err != nil {
		return cli.Exit(err.Error(), exitFailed)
	}
	sources := map[v1.Hash]string{}
	for _, e := range entries {
		if d, err := e.Image.Digest(); err == nil {
			sources[d] = e.Source
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PLATFORM\tDIGEST\tSOURCE")
	for _, d := range im.Manifests {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", d.Platform, d.Digest, sources[d.Digest])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nindex %s (%s, %s)\n", h, im.MediaType, count(len(im.Manifests), "image", "images"))
	for _, t := range req.tags {
		fmt.Fprintf(w, "pushed %s@%s\n", t, h)
	}
	if req.ociDir != "" {
		fmt.Fprintf(w, "wrote oci:%s:%s\n", req.ociDir, indexRefName(req))
		printPlatformRefs(w, "  ", req.ociDir, indexRefName(req))
	}
	return nil
}

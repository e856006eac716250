package main

import (
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/urfave/cli/v2"

	"kiln/manifest"
)

func pushCommand() *cli.Command {
	return &cli.Command{
		Name:      "push",
		Usage:     "push an image or index from an OCI layout to a registry, with kiln's retries",
		UsageText: "kiln push --from oci:DIR [--ref NAME] DEST...",
		Description: `push sends what kiln build, build-all or index create wrote into an OCI layout to
every DEST, without building again: the command a failed push prints. Blobs the registry
has are skipped, every write is retried (--retries, --retry-budget), and a DEST tag is
moved only once its image or index is whole in the registry.

--ref picks one entry of the layout by its org.opencontainers.image.ref.name; a layout
with one entry needs none.

Examples:
   # After "kiln build" could not push: the image was kept in a layout
   kiln push --from oci:/tmp/kiln-unpushed-api-4f1c2a9b0e7d registry.example.com/acme/api:1.4.2

   # Push a local build-all result (--no-push) once the registry is back
   kiln push --from oci:out/api --ref api registry.example.com/acme/api:1.4.2 registry.example.com/acme/api:latest

Exit status: 0 if every DEST has it; 1 if a push failed or the layout cannot be read; 2 for
bad flags.`,
		ArgsUsage: "DEST...",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "from", Usage: "the OCI layout to push from: oci:`DIR`", Required: true, EnvVars: envs("FROM")},
			&cli.StringFlag{Name: "ref", Usage: "the layout entry to push, by its ref name (default: the only one)", EnvVars: envs("REF")},
			logFormatFlag(), verbosityFlag(), logTimestampFlag(),
		}, append(retryFlags(), registryFlags(manifest.Push)...)...),
		Action:       runPush,
		OnUsageError: usageError,
	}
}

func runPush(c *cli.Context) error {
	log, err := indexLogger(c)
	if err != nil {
		return cli.Exit(err.Error(), exitUsage)
	}
	dir, ok := strings.CutPrefix(c.String("from"), "oci:")
	if !ok || dir == "" {
		return cli.Exit(fmt.Sprintf("--from: want oci:DIR, got %q", c.String("from")), exitUsage)
	}
	if c.NArg() == 0 {
		return cli.Exit("give at least one DEST to push to (kiln push --from oci:DIR DEST...)", exitUsage)
	}
	client, err := newClient(c, nil, log)
	if err != nil {
		return cli.Exit(err.Error(), exitUsage)
	}
	var dests []name.Reference
	for _, a := range c.Args().Slice() {
		ref, err := client.ParseReference(a)
		if err != nil {
			return cli.Exit(fmt.Sprintf("DEST %q: %v", a, err), exitUsage)
		}
		dests = append(dests, ref)
	}
	desc, idx, err := layoutEntry(dir, c.String("ref"))
	if err != nil {
		return cli.Exit(err.Error(), exitFailed)
	}
	var h v1.Hash
	if desc.MediaType.IsIndex() {
		child, err := idx.ImageIndex(desc.Digest)
		if err != nil {
			return cli.Exit(fmt.Sprintf("oci:%s: %v", dir, err), exitFailed)
		}
		h, err = client.PushIndex(c.Context, child, dests)
		if err != nil {
			return cli.Exit(err.Error(), exitFailed)
		}
	} else {
		img, err := idx.Image(desc.Digest)
		if err != nil {
			return cli.Exit(fmt.Sprintf("oci:%s: %v", dir, err), exitFailed)
		}
		h, err = client.Push(c.Context, img, dests)
		if err != nil {
			return cli.Exit(err.Error(), exitFailed)
		}
	}
	for _, d := range dests {
		fmt.Fprintf(c.App.Writer, "pushed %s (%s)\n", d, h)
	}
	return nil
}

// layoutEntry finds the entry of the layout at dir named ref (its
// org.opencontainers.image.ref.name), or its only entry when ref is "":
// the per-platform names kiln files next to an image or index
// (manifest.AnnotationPlatformOf) do not count.
func layoutEntry(dir, ref string) (v1.Descriptor, v1.ImageIndex, error) {
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return v1.Descriptor{}, nil, fmt.Errorf("oci:%s: %w", dir, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return v1.Descriptor{}, nil, fmt.Errorf("oci:%s: %w", dir, err)
	}
	var names []string
	var own []v1.Descriptor // entries that are not another entry's platform
	for _, d := range im.Manifests {
		n := d.Annotations[manifest.AnnotationRefName]
		if ref != "" && n == ref {
			return d, idx, nil
		}
		names = append(names, n)
		if d.Annotations[manifest.AnnotationPlatformOf] == "" {
			own = append(own, d)
		}
	}
	if ref == "" && len(own) == 1 {
		return own[0], idx, nil
	}
	if ref == "" {
		return v1.Descriptor{}, nil, fmt.Errorf("oci:%s holds %d entries (%s): pick one with --ref", dir, len(im.Manifests), strings.Join(names, ", "))
	}
	return v1.Descriptor{}, nil, fmt.Errorf("oci:%s has no entry named %q (it has: %s)", dir, ref, strings.Join(names, ", "))
}

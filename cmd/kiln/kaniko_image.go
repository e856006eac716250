package main

// What kaniko's flags do to the built image and its outputs: --image-format,
// --annotation, --image-name-with-digest-file,
// --image-name-tag-with-digest-file, --push-ignore-immutable-tag-errors and
// --dryrun.

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/urfave/cli/v2"

	"kiln/builder"
	"kiln/builder/dockerfile"
	"kiln/config"
	"kiln/manifest"
	"kiln/platform"
)

// kanikoImage gives the built image the media types of --image-format and
// the annotations of --annotation.
func kanikoImage(c *cli.Context, res *builder.Result) error {
	img := res.Image
	if f := c.String("image-format"); f != "" {
		var err error
		if img, err = convertFormat(img, f == "oci"); err != nil {
			return fmt.Errorf("--image-format %s: %w", f, err)
		}
	}
	anns, err := kanikoAnnotations(c)
	if err != nil {
		return err
	}
	if len(anns) > 0 {
		img = mutate.Annotations(img, anns).(v1.Image)
	}
	if img == res.Image {
		return nil
	}
	if res.Digest, err = img.Digest(); err != nil {
		return err
	}
	if res.ConfigDigest, err = img.ConfigName(); err != nil {
		return err
	}
	res.Image = img
	return nil
}

func kanikoAnnotations(c *cli.Context) (map[string]string, error) {
	if !c.IsSet("annotation") {
		return nil, nil
	}
	out := map[string]string{}
	for _, kv := range c.StringSlice("annotation") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--annotation %q: want KEY=VALUE", kv)
		}
		out[k] = v
	}
	return out, nil
}

// layerTypes maps each layer media type to its twin in the other format.
var layerTypes = map[types.MediaType]types.MediaType{
	types.DockerLayer:             types.OCILayer,
	types.DockerUncompressedLayer: types.OCIUncompressedLayer,
	types.DockerForeignLayer:      types.OCIRestrictedLayer,
	types.OCILayer:                types.DockerLayer,
	types.OCIUncompressedLayer:    types.DockerUncompressedLayer,
	types.OCIRestrictedLayer:      types.DockerForeignLayer,
}

// convertFormat gives img the OCI or the Docker media types: the same
// config and layer bytes, described by another manifest.
func convertFormat(img v1.Image, toOCI bool) (v1.Image, error) {
	mt, err := img.MediaType()
	if err != nil {
		return nil, err
	}
	if (mt == types.OCIManifestSchema1) == toOCI {
		return img, nil
	}
	manifestType, configType := types.DockerManifestSchema2, types.DockerConfigJSON
	if toOCI {
		manifestType, configType = types.OCIManifestSchema1, types.OCIConfigJSON
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	if len(m.Layers) != len(layers) {
		return nil, fmt.Errorf("the manifest lists %d layers, the image has %d", len(m.Layers), len(layers))
	}
	adds := make([]mutate.Addendum, len(layers))
	for i, l := range layers {
		lt := m.Layers[i].MediaType // the manifest's: a converted image's layers still give their old type
		to, ok := layerTypes[lt]
		if !ok {
			return nil, fmt.Errorf("layer %d is %s, which the other format has no type for", i+1, lt)
		}
		adds[i] = mutate.Addendum{Layer: l, MediaType: to}
	}
	out := mutate.ConfigMediaType(mutate.MediaType(empty.Image, manifestType), configType)
	if out, err = mutate.Append(out, adds...); err != nil {
		return nil, err
	}
	return mutate.ConfigFile(out, cf) // the history and the rest as built, not Append's
}

// pushImage pushes img to every destination. With
// --push-ignore-immutable-tag-errors a destination whose registry refuses
// to move an immutable tag is logged and skipped, as kaniko does.
func pushImage(c *cli.Context, client *manifest.Client, log *slog.Logger, img v1.Image, dests []name.Reference) error {
	if !c.Bool("push-ignore-immutable-tag-errors") {
		_, err := client.Push(c.Context, img, dests)
		return err
	}
	for _, d := range dests {
		_, err := client.Push(c.Context, img, []name.Reference{d})
		if err != nil && immutableTagError(err) {
			log.Info("immutable tag error ignored (--push-ignore-immutable-tag-errors)", "destination", d.String(), "err", err)
			continue
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// immutableTagErrors are what registries say when a push would move an
// immutable tag (kaniko's list).
var immutableTagErrors = []string{
	"The repository has enabled tag immutability",               // Google Artifact Registry
	"cannot be overwritten because the repository is immutable", // Amazon ECR
}

func immutableTagError(err error) bool {
	msg := err.Error()
	for _, s := range immutableTagErrors {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// writeKanikoDigestFiles writes --image-name-with-digest-file
// (REPOSITORY@DIGEST) and --image-name-tag-with-digest-file
// (REPOSITORY:TAG@DIGEST), a line per destination, as kaniko does.
func writeKanikoDigestFiles(c *cli.Context, dests []name.Reference, digest v1.Hash) error {
	for _, f := range []struct {
		flag    string
		withTag bool
	}{{"image-name-with-digest-file", false}, {"image-name-tag-with-digest-file", true}} {
		file := c.String(f.flag)
		if file == "" {
			continue
		}
		if err := writeKanikoFile(c.Context, file, []byte(kanikoDigestLines(dests, digest, f.withTag))); err != nil {
			return fmt.Errorf("--%s: %w", f.flag, err)
		}
	}
	return nil
}

// kanikoDigestLines is REPOSITORY[:TAG]@DIGEST for each destination, a
// line each.
func kanikoDigestLines(dests []name.Reference, digest v1.Hash, withTag bool) string {
	var b strings.Builder
	for _, d := range dests {
		b.WriteString(d.Context().Name())
		if t, ok := d.(name.Tag); ok && withTag {
			b.WriteString(":" + t.TagStr())
		}
		b.WriteString("@" + digest.String() + "\n")
	}
	return b.String()
}

// writeKanikoFile writes a file kaniko's way: its folder made if missing,
// or PUT to an https:// URL (a pre-signed bucket URL).
func writeKanikoFile(ctx context.Context, file string, data []byte) error {
	if strings.HasPrefix(file, "https://") {
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, file, bytes.NewReader(data))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "text/plain")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("PUT to %s%s: %s", req.URL.Host, req.URL.Path, resp.Status) // not the query: a signature
		}
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	return writeFileAtomic(file, data)
}

// dryRun prints what kiln build would do (kaniko's --dryrun): the image,
// the platform, the base images its Dockerfile needs, and the outputs.
func dryRun(c *cli.Context, plan *buildPlan) error {
	w := c.App.Writer
	r := plan.req
	df := r.Dockerfile
	if df == "" {
		df = "Dockerfile"
	}
	fmt.Fprintf(w, "dry run: would build %s for %s from %s (%s", plan.name, platform.Format(r.Platform), r.Context, df)
	if r.Target != "" {
		fmt.Fprintf(w, ", target %s", r.Target)
	}
	fmt.Fprintln(w, ")")
	data, where, err := readDockerfile(config.Image{Name: plan.name, Context: r.Context, Dockerfile: df})
	if err == nil {
		bases, err := dockerfile.BaseImages(data, where, dockerfile.Options{Args: r.BuildArgs, Target: r.Target, TargetPlatform: r.Platform})
		if err != nil {
			return err
		}
		for _, b := range bases {
			fmt.Fprintf(w, "  base %s (%s)\n", b.Ref, platform.Format(b.Platform))
		}
	}
	for _, d := range plan.dests {
		if plan.push {
			fmt.Fprintf(w, "  would push %s\n", d)
		}
	}
	if plan.ociDir != "" {
		fmt.Fprintf(w, "  would write oci:%s\n", plan.ociDir)
	}
	if plan.tarPath != "" {
		fmt.Fprintf(w, "  would write %s\n", plan.tarPath)
	}
	return nil
}

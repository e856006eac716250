package main

import (
	"fmt"
	"slices"
	"strings"

	specs "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/urfave/cli/v2"

	"kiln/builder/runner/kube"
	"kiln/config"
)

func renderCommand() *cli.Command {
	return &cli.Command{
		Name:  "render",
		Usage: "write the Kubernetes objects that run kiln in a cluster, as YAML, from build.toml",
		Description: `kiln render writes, from build.toml's [runner.kubernetes], what a platform team applies once
(kubectl apply -f -) or keeps in its GitOps repository:

   rbac       the coordinator's ServiceAccount, a Role for its Jobs, pods, logs and events, a ClusterRole
              to list nodes (build-all's preflight), and the build pods' own ServiceAccount (no rights)
   pvc        the warm cache's claim (ReadWriteMany)
   cronjob    the nightly CronJob: kiln warm --refresh --prune --report of every base image of every
              image and [warm].extra (listed when rendered: re-render when a FROM changes)
   warm-init  an init container for a CI pod that warms the cache before it builds
   job        the build Job of every (image, platform), exactly as build-all --runner kubernetes
              creates it (the same code makes both): kiln build in container isolation, in an
              unprivileged pod (seccompProfile RuntimeDefault), on a node of the platform's os and
              arch, its context fetched from the registry by digest, the image pushed by digest
   all        all of the above

Examples:
   kiln render all | kubectl apply -f -
   kiln render --namespace ci --image registry.example.com/tools/kiln:1.0 rbac pvc cronjob
   kiln render --build-id 42 job api      # the Jobs of image "api" only

The job kind packs each image's context to name it by digest (nothing is pushed: build-all pushes it).
Exit status: 0, or 2 for bad flags or build.toml.`,
		ArgsUsage: "KIND... [IMAGE...]",
		Flags: []cli.Flag{
			configFlag(), allowFSFlag(),
			&cli.StringFlag{Name: "namespace", Aliases: []string{"n"}, Usage: "put the objects in this namespace (default: runner.kubernetes.namespace, else \"default\")", EnvVars: envs("NAMESPACE")},
			&cli.StringFlag{Name: "image", Usage: "kiln's own image to run (default: runner.kubernetes.image)", EnvVars: envs("KILN_IMAGE")},
			&cli.StringFlag{Name: "build-id", Value: "render", Usage: "the build id in the Jobs' names and labels (build-all makes a new one per run)", EnvVars: envs("BUILD_ID")},
		},
		Action:       runRender,
		OnUsageError: usageError,
	}
}

func runRender(c *cli.Context) error {
	kinds, images := splitRenderArgs(c.Args().Slice())
	if len(kinds) == 0 {
		return cli.Exit(fmt.Sprintf("kiln render: name what to render: %s or all", strings.Join(kube.RenderKinds, ", ")), exitUsage)
	}
	copts, err := configOptions(c)
	if err != nil {
		return cli.Exit(err.Error(), exitUsage)
	}
	cfg, err := config.Load(c.String("config"), copts...)
	if err != nil {
		return cli.Exit(err.Error(), exitUsage)
	}
	in := kube.RenderInput{Options: kubeOptions(cfg), WarmPlatforms: cfg.Warm.Platforms}
	if c.IsSet("namespace") {
		in.Options.Namespace = c.String("namespace")
	}
	if c.IsSet("image") {
		in.Options.Image = c.String("image")
	}
	if in.Options.Image == "" {
		return cli.Exit("kiln render: no kiln image: set runner.kubernetes.image in build.toml or give --image", exitUsage)
	}
	if want(kinds, "cronjob") {
		if in.WarmImages, in.WarmPlatforms, err = warmList(c, cfg); err != nil {
			return cli.Exit(err.Error(), exitUsage)
		}
	}
	if want(kinds, "job") {
		if in.Jobs, err = renderJobs(c, cfg, images); err != nil {
			return cli.Exit(err.Error(), exitUsage)
		}
	}
	out, err := kube.Render(in, kinds)
	if err != nil {
		return cli.Exit(err.Error(), exitUsage)
	}
	_, err = c.App.Writer.Write(out)
	return err
}

// warmList is what kiln warm would warm from build.toml: its images and
// platforms.
func warmList(c *cli.Context, cfg *config.Config) ([]string, []specs.Platform, error) {
	plats, err := warmPlatforms(c, cfg)
	if err != nil {
		return nil, nil, err
	}
	plan := &warmPlan{platforms: plats}
	if err := collectItems(c, cfg, plan); err != nil {
		return nil, nil, err
	}
	return plan.refs(), plats, nil
}

// splitRenderArgs tells kinds from image names.
func splitRenderArgs(args []string) (kinds, images []string) {
	for _, a := range args {
		if a == "all" || slices.Contains(kube.RenderKinds, a) {
			kinds = append(kinds, a)
		} else {
			images = append(images, a)
		}
	}
	return kinds, images
}

func want(kinds []string, kind string) bool {
	return slices.Contains(kinds, kind) || slices.Contains(kinds, "all")
}

// renderJobs makes the build Jobs of the named images (all without names).
func renderJobs(c *cli.Context, cfg *config.Config, names []string) ([]kube.BuildSpec, error) {
	if len(names) == 0 {
		names = cfg.ImageNames()
	}
	var specs []kube.BuildSpec
	for _, n := range names {
		img, ok := cfg.Images[n]
		if !ok {
			return nil, fmt.Errorf("kiln render: %q is neither a kind (%s, all) nor an image of %s (images: %s)",
				n, strings.Join(kube.RenderKinds, ", "), cfg.File, strings.Join(cfg.ImageNames(), ", "))
		}
		s, err := buildSpecs(c.Context, cfg, c.String("build-id"), img)
		if err != nil {
			return nil, err
		}
		specs = append(specs, s...)
	}
	return specs, nil
}

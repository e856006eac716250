package main

// kiln warm's side of kaniko compatibility (kaniko.go): the warmer's flags.

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/urfave/cli/v2"

	"kiln/builder/dockerfile"
	"kiln/warmer"
)

// kanikoWarmFlags are the warmer's flags kiln warm does not have under the
// same name.
func kanikoWarmFlags() []cli.Flag {
	return inCategory([]cli.Flag{
		&cli.StringFlag{Name: "customPlatform", Aliases: []string{"custom-platform"}, Usage: "kaniko's name for --platform"},
		&cli.BoolFlag{Name: "force", Usage: "re-check every cached tag now: --refresh --max-age 0 (kiln's blobs are verified, so never downloaded twice)"},
		&cli.StringFlag{Name: "dockerfile", Usage: "also warm the base images of this Dockerfile `FILE`, for every --platform"},
		&cli.StringSliceFlag{Name: "build-arg", Usage: "a Dockerfile ARG, `K=V`, for --dockerfile's FROM lines (repeatable)"},
	})
}

// applyKanikoWarm sets kiln warm's flags from their kaniko names.
func applyKanikoWarm(c *cli.Context) ([]kanikoNotice, error) {
	var notices []kanikoNotice
	if c.IsSet("customPlatform") {
		if err := c.Set("platform", c.String("customPlatform")); err != nil {
			return nil, err
		}
	}
	if c.Bool("force") {
		if err := c.Set("refresh", "true"); err != nil {
			return nil, err
		}
		if !c.IsSet("max-age") {
			if err := c.Set("max-age", "0s"); err != nil {
				return nil, err
			}
		}
	}
	if c.IsSet("build-arg") && c.String("dockerfile") == "" {
		return nil, fmt.Errorf("--build-arg goes with --dockerfile (the Dockerfile whose base images are warmed)")
	}
	if c.IsSet("cache-ttl") && !c.Bool("prune") {
		notices = append(notices, kanikoNotice{flag: "cache-ttl", level: slog.LevelInfo,
			note: "in kiln warm it is the age past which --prune drops layer cache entries; base images are re-checked by --refresh (tags older than --max-age)"})
	}
	return notices, nil
}

// addKanikoDockerfile adds the base images of the warmer's --dockerfile,
// its ARGs set by --build-arg, for every platform warmed.
func addKanikoDockerfile(c *cli.Context, plan *warmPlan) error {
	file := c.String("dockerfile")
	if file == "" {
		return nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("--dockerfile: %w", err)
	}
	args, err := keyValues(c, "build-arg", nil)
	if err != nil {
		return err
	}
	for _, p := range plan.platforms {
		bases, err := dockerfile.BaseImages(data, file, dockerfile.Options{Args: args, TargetPlatform: p, AllStages: true})
		if err != nil {
			return err
		}
		for _, b := range bases {
			plan.items = append(plan.items, warmer.Item{Ref: b.Ref, Platform: b.Platform})
		}
	}
	return nil
}

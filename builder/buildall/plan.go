package buildall

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	specs "github.com/opencontainers/image-spec/specs-go/v1"

	"kiln/builder"
	"kiln/builder/dockerfile"
	"kiln/builder/runner"
	"kiln/platform"
)

// Image is one image to build for several platforms: plain data, filled
// from build.toml.
type Image struct {
	Name              string
	Request           builder.Request  // Platform and BuildPlatform are set per platform
	Platforms         []specs.Platform // required: the index is pushed only if all build
	OptionalPlatforms []specs.Platform // best effort: left out of the index if they fail
	Tags              []name.Reference // the index's tags
	Push              bool             // push the index to Tags
	OCIDir            string           // also write an OCI layout holding the index here
	RefName           string           // the index's name in that layout; "" = the first tag, else Name
	Annotations       map[string]string
}

// refName is what the index is filed under in an OCI layout.
func (im Image) refName() string {
	switch {
	case im.RefName != "":
		return im.RefName
	case len(im.Tags) > 0:
		return im.Tags[0].Name()
	}
	return im.Name
}

// Target is one (image, platform) as planned.
type Target struct {
	Platform  specs.Platform
	Required  bool
	Execution runner.Execution
	// Err is a failure found before any work: the platform needs a
	// matching node (an *runner.ExecutionError) or its Dockerfile is bad.
	Err error
}

// ImagePlan is an image and its targets, required platforms first, each
// list in the order given.
type ImagePlan struct {
	Image   Image
	Targets []Target
}

// Blocked is the first up-front failure of a required platform: nothing of
// the image is built.
func (ip ImagePlan) Blocked() error {
	for _, t := range ip.Targets {
		if t.Required && t.Err != nil {
			return t.Err
		}
	}
	return nil
}

// Plan is what Run will build, where and why.
type Plan struct {
	Host   specs.Platform
	Runner string
	Jobs   int
	Images []ImagePlan
}

// Failed reports whether some image fails before any work.
func (p *Plan) Failed() bool {
	for _, ip := range p.Images {
		if ip.Blocked() != nil {
			return true
		}
	}
	return false
}

// Plan reads every image's Dockerfile and decides, for each platform, how
// it builds on this host (runner.Decide). Problems of one image or platform
// are Target.Err values; the error is for input that makes no plan at all
// (wrapping ErrInvalid, or runner.ErrStdinContext).
func (c *Coordinator) Plan(ctx context.Context, images []Image) (*Plan, error) {
	if err := checkImages(images); err != nil {
		return nil, err
	}
	p := &Plan{Host: c.o.host, Runner: c.runner.Name(), Jobs: c.o.jobs, Images: make([]ImagePlan, len(images))}
	for i, im := range images {
		ip, err := c.planImage(ctx, im)
		if err != nil {
			return nil, err
		}
		p.Images[i] = ip
	}
	return p, nil
}

func (c *Coordinator) planImage(ctx context.Context, im Image) (ImagePlan, error) {
	ip := ImagePlan{Image: im}
	data, file, readErr := runner.ReadDockerfile(ctx, im.Request, c.o.tempDir)
	if err := ctx.Err(); err != nil {
		return ip, err
	}
	for _, list := range []struct {
		ps       []specs.Platform
		required bool
	}{{im.Platforms, true}, {im.OptionalPlatforms, false}} {
		for _, p := range list.ps {
			t := Target{Platform: platform.Normalize(p), Required: list.required}
			if readErr != nil {
				t.Execution.Mode, t.Err = runner.Blocked, fmt.Errorf("images.%s: %w", im.Name, readErr)
			} else {
				t.Execution, t.Err = c.decide(ctx, im, t.Platform, data, file)
			}
			ip.Targets = append(ip.Targets, t)
		}
	}
	return ip, nil
}

// decide evaluates the Dockerfile for p and asks runner.Decide, or the
// runner itself when it is a runner.Decider.
func (c *Coordinator) decide(ctx context.Context, im Image, p specs.Platform, data []byte, file string) (runner.Execution, error) {
	req := c.request(im, p)
	plan, err := runner.PlanFor(data, file, req)
	if err != nil {
		return runner.Execution{Mode: runner.Blocked}, fmt.Errorf("images.%s %s: %w", im.Name, platform.Format(p), err)
	}
	if err := c.checkBases(ctx, im, p, data, file); err != nil {
		return runner.Execution{Mode: runner.Blocked}, fmt.Errorf("images.%s %s: %w", im.Name, platform.Format(p), err)
	}
	if d, ok := c.runner.(runner.Decider); ok {
		ex, err := d.Decide(ctx, p)
		if err != nil {
			return runner.Execution{Mode: runner.Blocked}, fmt.Errorf("images.%s %s: %w", im.Name, platform.Format(p), err)
		}
		ex.Runs = len(runner.RunSites(plan))
		return ex, nil
	}
	ex, err := runner.Decide(c.o.host, p, plan, c.o.emu)
	if err != nil {
		return ex, fmt.Errorf("images.%s %s: %w", im.Name, platform.Format(p), err)
	}
	return ex, nil
}

// checkBases looks up each external base the build of p needs (when the
// coordinator has WithBaseImages) and returns the first that cannot serve
// p: missing for p, or made for another platform. Other failures (the
// network) are left for the build to meet and report.
func (c *Coordinator) checkBases(ctx context.Context, im Image, p specs.Platform, data []byte, file string) error {
	if c.o.bases == nil {
		return nil
	}
	req := c.request(im, p)
	bases, err := dockerfile.BaseImages(data, file, dockerfile.Options{
		Args: req.BuildArgs, Target: req.Target, TargetPlatform: p, BuildPlatform: c.o.host,
	})
	if err != nil {
		return nil // the build reports Dockerfile problems with their line
	}
	seen := map[string]bool{}
	for _, b := range bases {
		key := b.Ref + "@" + platform.Format(b.Platform)
		if seen[key] {
			continue
		}
		seen[key] = true
		err := builder.CheckBase(ctx, c.o.bases, b.Ref, b.Platform, c.o.allowMismatch)
		if errors.Is(err, builder.ErrPlatformMismatch) || errors.Is(err, platform.ErrNoMatch) {
			return fmt.Errorf("%s:%d: %w", file, b.Line, err)
		}
	}
	return nil
}

// request is the image's Request for platform p, built on this host.
func (c *Coordinator) request(im Image, p specs.Platform) builder.Request {
	req := im.Request
	req.Platform = p
	req.BuildPlatform = c.o.host
	return req
}

// checkImages refuses input no plan can come of.
func checkImages(images []Image) error {
	if len(images) == 0 {
		return fmt.Errorf("%w: no images to build", ErrInvalid)
	}
	names := map[string]bool{}
	for _, im := range images {
		switch {
		case im.Name == "":
			return fmt.Errorf("%w: an image has no name", ErrInvalid)
		case names[im.Name]:
			return fmt.Errorf("%w: image %s is listed twice", ErrInvalid, im.Name)
		case len(im.Platforms) == 0:
			return fmt.Errorf("%w: images.%s has no required platforms", ErrInvalid, im.Name)
		case im.Request.Context == "-":
			return fmt.Errorf("images.%s: %w", im.Name, runner.ErrStdinContext)
		case im.Push && len(im.Tags) == 0:
			return fmt.Errorf("%w: images.%s is to be pushed but has no tags", ErrInvalid, im.Name)
		case !im.Push && im.OCIDir == "":
			return fmt.Errorf("%w: images.%s: nowhere to put the index (no push, no OCI layout)", ErrInvalid, im.Name)
		}
		names[im.Name] = true
		if err := checkPlatforms(im); err != nil {
			return err
		}
	}
	return nil
}

func checkPlatforms(im Image) error {
	seen := map[string]bool{}
	for _, p := range append(append([]specs.Platform(nil), im.Platforms...), im.OptionalPlatforms...) {
		key := platform.Format(p)
		if seen[key] {
			return fmt.Errorf("%w: images.%s lists %s twice", ErrInvalid, im.Name, key)
		}
		seen[key] = true
	}
	return nil
}

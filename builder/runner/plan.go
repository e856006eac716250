package runner

import (
	"context"
	"fmt"

	specs "github.com/opencontainers/image-spec/specs-go/v1"

	"kiln/builder"
	"kiln/builder/buildcontext"
	"kiln/builder/dockerfile"
	"kiln/platform"
)

// ReadDockerfile reads req's Dockerfile out of its build context,
// materialising a tar or git context under tmpDir ("" = os.TempDir()) for
// as long as that takes. It returns the bytes and the name messages use.
func ReadDockerfile(ctx context.Context, req builder.Request, tmpDir string) ([]byte, string, error) {
	if req.Context == "-" {
		return nil, "", ErrStdinContext
	}
	bc, err := buildcontext.Open(ctx, req.Context, buildcontext.Options{Dockerfile: req.Dockerfile, TempDir: tmpDir})
	if err != nil {
		return nil, "", err
	}
	defer bc.Close()
	data, err := bc.Dockerfile()
	if err != nil {
		return nil, "", fmt.Errorf("reading the Dockerfile of %s: %w", req.Context, err)
	}
	name := req.Dockerfile
	if name == "" {
		name = buildcontext.DefaultDockerfile
	}
	return data, name, nil
}

// PlanFor evaluates a Dockerfile for req as builder.Build does: its build
// args and target, req.Platform as the target platform and
// req.BuildPlatform (zero: this machine) as $BUILDPLATFORM.
func PlanFor(data []byte, name string, req builder.Request) (*dockerfile.Plan, error) {
	return dockerfile.NewPlan(data, name, dockerfile.Options{
		Args: req.BuildArgs, Target: req.Target,
		TargetPlatform: orHost(req.Platform), BuildPlatform: orHost(req.BuildPlatform),
	})
}

func orHost(p specs.Platform) specs.Platform {
	if p.OS == "" && p.Architecture == "" {
		return platform.Host()
	}
	return platform.Normalize(p)
}

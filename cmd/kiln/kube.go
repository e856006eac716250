package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"

	"github.com/google/go-containerregistry/pkg/name"
	specs "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/urfave/cli/v2"

	"kiln/builder/buildcontext"
	"kiln/builder/dockerfile"
	"kiln/builder/runner/kube"
	"kiln/config"
	"kiln/platform"
)

// kubeOptions is [runner.kubernetes] of build.toml as the runner's options.
func kubeOptions(cfg *config.Config) kube.Options {
	k := cfg.Runner.Kubernetes
	o := kube.Options{
		Namespace: k.Namespace, Image: k.Image, ImagePullPolicy: k.ImagePullPolicy, ImagePullSecrets: k.ImagePullSecrets,
		ServiceAccount: k.ServiceAccount, NodeSelector: k.NodeSelector, Requests: k.Requests, Limits: k.Limits,
		Labels: k.Labels, Annotations: k.Annotations, CredentialsSecret: k.CredentialsSecret,
		CacheClaim: k.CacheClaim, CacheSize: k.CacheSize, StorageClass: k.StorageClass,
		ActiveDeadline: k.ActiveDeadline, TTLAfterFinished: k.TTLAfterFinished, WarmSchedule: k.WarmSchedule,
		HostNetwork: k.HostNetwork,
	}
	for _, t := range k.Tolerations {
		o.Tolerations = append(o.Tolerations, kube.Toleration{Key: t.Key, Operator: t.Operator, Value: t.Value, Effect: t.Effect, Seconds: t.Seconds})
	}
	for _, host := range slices.Sorted(maps.Keys(cfg.Registries)) {
		if cfg.Registries[host].Insecure {
			o.Insecure = append(o.Insecure, host)
		}
	}
	return o
}

// packedContext is an image's context packed for a pod: the gzipped tar,
// its digest, and the reference the pod fetches it by.
type packedContext struct {
	data []byte
	ref  name.Digest
	df   []byte // the Dockerfile, for the base images
}

// packContext packs img's context and names where it goes: the context
// repository of [runner.kubernetes], else the image's first tag's
// repository. A git context is passed through as it is (ref is zero).
func packContext(ctx context.Context, cfg *config.Config, img config.Image) (*packedContext, error) {
	repo, err := contextRepository(cfg, img)
	if err != nil {
		return nil, err
	}
	c, err := buildcontext.Open(ctx, img.Context, buildcontext.Options{Dockerfile: img.Dockerfile})
	if err != nil {
		return nil, fmt.Errorf("images.%s: %w", img.Name, err)
	}
	defer c.Close()
	df, err := c.Dockerfile()
	if err != nil {
		return nil, fmt.Errorf("images.%s: %w", img.Name, err)
	}
	var buf bytes.Buffer
	if err := c.Pack(&buf); err != nil {
		return nil, fmt.Errorf("images.%s: %w", img.Name, err)
	}
	sum := sha256.Sum256(buf.Bytes())
	ref := repo.Digest(fmt.Sprintf("sha256:%x", sum))
	return &packedContext{data: buf.Bytes(), ref: ref, df: df}, nil
}

// contextRepository is where an image's packed context is pushed.
func contextRepository(cfg *config.Config, img config.Image) (name.Repository, error) {
	if r := cfg.Runner.Kubernetes.ContextRepository; r != "" {
		return name.NewRepository(r)
	}
	repo, err := firstRepository(img)
	if err != nil {
		return name.Repository{}, fmt.Errorf("images.%s: the Kubernetes runner pushes the build context to the first tag's repository, or to runner.kubernetes.context_repository: %w", img.Name, err)
	}
	return repo, nil
}

func firstRepository(img config.Image) (name.Repository, error) {
	if len(img.Tags) == 0 {
		return name.Repository{}, fmt.Errorf("images.%s has no tags", img.Name)
	}
	ref, err := name.ParseReference(img.Tags[0])
	if err != nil {
		return name.Repository{}, err
	}
	return ref.Context(), nil
}

// buildSpecs are the Jobs for img, one per platform (required, then
// optional), from its packed context.
func buildSpecs(buildID string, img config.Image, pc *packedContext) ([]kube.BuildSpec, error) {
	repo, err := firstRepository(img)
	if err != nil {
		return nil, fmt.Errorf("images.%s: the Kubernetes runner pushes each platform by digest to the first tag's repository: %w", img.Name, err)
	}
	var out []kube.BuildSpec
	for _, p := range append(slices.Clone(img.Platforms), img.OptionalPlatforms...) {
		bases, err := platformBases(img, pc.df, p)
		if err != nil {
			return nil, err
		}
		out = append(out, kube.BuildSpec{
			BuildID: buildID, Image: img.Name, Platform: p, Context: blobScheme + pc.ref.String(),
			Dockerfile: img.Dockerfile, Target: img.Target, BuildArgs: img.Args, Labels: img.Labels,
			Repository: repo.Name(), Bases: bases,
		})
	}
	return out, nil
}

// platformBases are the base images a build of img for p pulls, for the
// Job's warm init container.
func platformBases(img config.Image, df []byte, p specs.Platform) ([]string, error) {
	bases, err := dockerfile.BaseImages(df, img.Dockerfile, dockerfile.Options{Args: img.Args, Target: img.Target, TargetPlatform: p})
	if err != nil {
		return nil, fmt.Errorf("images.%s: %w", img.Name, err)
	}
	var out []string
	for _, b := range bases {
		if platform.Equal(b.Platform, p) && !slices.Contains(out, b.Ref) {
			out = append(out, b.Ref)
		}
	}
	return out, nil
}

// newKubeRunner connects to the cluster of [runner.kubernetes] and checks,
// before anything is made, that this identity may do what build-all does.
func newKubeRunner(c *cli.Context, out *output, s *buildAllSetup, workDir string) (*kube.Runner, error) {
	k := s.cfg.Runner.Kubernetes
	if len(c.StringSlice("secret")) > 0 {
		// A secret file on this machine would have to travel in the Job
		// (its args, env or a Secret kiln creates): kiln does none of that.
		return nil, fmt.Errorf("--secret: the Kubernetes runner does not carry local secrets into its pods; " +
			"build the images that need RUN --mount=type=secret with the local runner for now")
	}
	conn := kube.Connection{Kubeconfig: k.Kubeconfig, Context: k.Context}
	cs, err := conn.Clientset()
	if err != nil {
		return nil, err
	}
	o := kubeOptions(s.cfg)
	if o.Namespace == "" {
		o.Namespace = conn.Namespace()
	}
	id := make([]byte, 4)
	_, _ = rand.Read(id)
	r := kube.NewRunner(cs, s.client, o, kube.RunnerConfig{
		BuildID: hex.EncodeToString(id), ContextRepository: k.ContextRepository,
		PendingTimeout: k.PendingTimeout, KeepFailed: k.KeepFailed, WorkDir: workDir,
	}, out.log)
	if err := r.Preflight(c.Context); err != nil {
		return nil, err
	}
	return r, nil
}

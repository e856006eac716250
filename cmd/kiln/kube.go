package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/urfave/cli/v2"

	"kiln/builder"
	"kiln/builder/runner"
	"kiln/builder/runner/kube"
	"kiln/config"
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
		LayerCache:  kube.LayerCache{On: cfg.Cache.Layers, Repo: cfg.Cache.LayersRepo, TTL: cfg.Cache.LayersTTL},
	}
	for _, t := range k.Tolerations {
		o.Tolerations = append(o.Tolerations, kube.Toleration{Key: t.Key, Operator: t.Operator, Value: t.Value, Effect: t.Effect, Seconds: t.Seconds})
	}
	for _, host := range slices.Sorted(maps.Keys(cfg.Registries)) {
		if cfg.Registries[host].Insecure {
			o.Insecure = append(o.Insecure, host)
		}
		if cfg.Registries[host].SkipTLSVerify {
			o.SkipTLSVerify = append(o.SkipTLSVerify, host)
		}
	}
	return o
}

// buildSpecs are the Jobs for img, one per platform (required, then
// optional): its context prepared (packed and named by digest, not
// pushed) and the Jobs made by kube.SpecFor, as the runner makes them.
func buildSpecs(ctx context.Context, cfg *config.Config, buildID string, img config.Image) ([]kube.BuildSpec, error) {
	var tags []name.Reference
	for _, t := range img.Tags {
		ref, err := name.ParseReference(t)
		if err != nil {
			return nil, fmt.Errorf("images.%s.tags: %w", img.Name, err)
		}
		tags = append(tags, ref)
	}
	req := builder.Request{Context: img.Context, Dockerfile: img.Dockerfile, Target: img.Target, BuildArgs: img.Args, Labels: img.Labels}
	repo, err := kube.ContextRepository(cfg.Runner.Kubernetes.ContextRepository, tags)
	if err != nil {
		return nil, fmt.Errorf("images.%s: %w", img.Name, err)
	}
	pc, err := kube.PrepareContext(ctx, req, repo, "")
	if err != nil {
		return nil, fmt.Errorf("images.%s: %w", img.Name, err)
	}
	defer pc.Close()
	var out []kube.BuildSpec
	for _, p := range append(slices.Clone(img.Platforms), img.OptionalPlatforms...) {
		job := runner.Job{Image: img.Name, Platform: p, Tags: tags, Request: req}
		spec, err := kube.SpecFor(job, buildID, pc.Ref, pc.Dockerfile)
		if err != nil {
			return nil, err
		}
		out = append(out, spec)
	}
	return out, nil
}

// newKubeRunner connects to the cluster of [runner.kubernetes] and checks,
// before anything is made, that this identity may do what build-all does.
func newKubeRunner(c *cli.Context, out *output, s *buildAllSetup, workDir string) (*kube.Runner, error) {
	k := s.cfg.Runner.Kubernetes
	conn := kube.Connection{Kubeconfig: k.Kubeconfig, Context: k.Context}
	api, err := conn.API()
	if err != nil {
		return nil, err
	}
	o := kubeOptions(s.cfg)
	o.Insecure = appendNew(o.Insecure, splitCommas(c.StringSlice("insecure-registry"))...)
	o.SkipTLSVerify = appendNew(o.SkipTLSVerify, splitCommas(c.StringSlice("skip-tls-verify-registry"))...)
	o.LayerCache = s.layerCache.kube()
	if o.Namespace == "" {
		o.Namespace = conn.Namespace()
	}
	id := c.String("build-id")
	if id == "" {
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		id = hex.EncodeToString(b)
	}
	r := kube.NewRunner(api, s.client, o, kube.RunnerConfig{
		BuildID: id, ContextRepository: k.ContextRepository,
		PendingTimeout: k.PendingTimeout, KeepFailed: k.KeepFailed, WorkDir: workDir,
	}, out.log)
	if err := r.Preflight(c.Context); err != nil {
		return nil, err
	}
	return r, nil
}

// checkKubeRegistryFlags refuses the registry settings the Kubernetes
// runner's pods would not get: they are told which registries are insecure
// or unverified (--insecure-registry, --skip-tls-verify-registry), nothing
// else, and a pod that reaches a registry otherwise than this process would
// fail late or pull from elsewhere.
func checkKubeRegistryFlags(c *cli.Context, cfg *config.Config) error {
	for _, f := range []string{"insecure", "insecure-pull", "skip-tls-verify", "skip-tls-verify-pull", "registry-certificate",
		"registry-client-cert", "registry-mirror", "registry-map", "skip-default-registry-fallback"} {
		if c.IsSet(f) {
			return fmt.Errorf("--%s: the Kubernetes runner's pods would not get it (they get --insecure-registry and --skip-tls-verify-registry only); build with --runner local", f)
		}
	}
	for _, host := range slices.Sorted(maps.Keys(cfg.Registries)) {
		if r := cfg.Registries[host]; r.CA != "" || r.ClientCert != "" {
			return fmt.Errorf("%s: registries.%q: the Kubernetes runner's pods would not get its CA bundle or client certificate; build with --runner local", cfg.File, host)
		}
	}
	return nil
}

package main

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	specs "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/urfave/cli/v2"

	"kiln/builder/dockerfile"
	"kiln/config"
	"kiln/platform"
	"kiln/warmer"
)

// warmPlan is build.toml and the flags turned into what warm needs.
type warmPlan struct {
	cacheDir  string
	jobs      int
	maxAge    time.Duration
	layerTTL  time.Duration  // cache.layers_ttl; 0 if not set
	cfg       *config.Config // build.toml, nil if none: its [registries]
	platforms []specs.Platform
	items     []warmer.Item
	images    int // images in build.toml
}

func (p *warmPlan) refs() []string {
	seen := map[string]bool{}
	var out []string
	for _, it := range p.items {
		if !seen[it.Ref] {
			seen[it.Ref] = true
			out = append(out, it.Ref)
		}
	}
	return out
}

func (p *warmPlan) refCount() int        { return len(p.refs()) }
func (p *warmPlan) platformList() string { return platform.FormatAll(p.platforms) }

// planWarm reads build.toml (if any) and the flags.
func planWarm(c *cli.Context) (*warmPlan, error) {
	cfg, err := loadConfig(c)
	if err != nil {
		return nil, err
	}
	plan := &warmPlan{jobs: config.DefaultJobs, maxAge: config.DefaultMaxAge, cfg: cfg}
	if cfg != nil {
		plan.cacheDir, plan.jobs, plan.maxAge = cfg.Cache.Dir, cfg.Cache.Jobs, cfg.Cache.MaxAge
		plan.layerTTL = cfg.Cache.LayersTTL
	}
	if err := applyWarmFlags(c, plan); err != nil {
		return nil, err
	}
	if plan.platforms, err = warmPlatforms(c, cfg); err != nil {
		return nil, err
	}
	return plan, collectItems(c, cfg, plan)
}

func applyWarmFlags(c *cli.Context, plan *warmPlan) error {
	if d := c.String("cache-dir"); d != "" {
		plan.cacheDir = d
	}
	if plan.cacheDir == "" {
		plan.cacheDir = defaultCacheDir()
	}
	if c.IsSet("jobs") {
		if n := c.Int("jobs"); n < 1 || n > 256 {
			return fmt.Errorf("--jobs: must be 1..256, got %d", n)
		}
		plan.jobs = c.Int("jobs")
	}
	if c.IsSet("max-age") {
		if c.Duration("max-age") < 0 {
			return fmt.Errorf("--max-age: must not be negative")
		}
		plan.maxAge = c.Duration("max-age")
	}
	return nil
}

// warmPlatforms: --platform, else [warm].platforms, else the union of the
// images' platforms, else this machine's.
func warmPlatforms(c *cli.Context, cfg *config.Config) ([]specs.Platform, error) {
	if flags := c.StringSlice("platform"); len(flags) > 0 {
		ps, err := platform.ParseAll(splitCommas(flags))
		if err != nil {
			return nil, fmt.Errorf("--platform: %w", err)
		}
		return ps, nil
	}
	if cfg == nil {
		return []specs.Platform{platform.Host()}, nil
	}
	if len(cfg.Warm.Platforms) > 0 {
		return cfg.Warm.Platforms, nil
	}
	var out []specs.Platform
	for _, name := range cfg.ImageNames() {
		img := cfg.Images[name]
		for _, p := range append(append([]specs.Platform(nil), img.Platforms...), img.OptionalPlatforms...) {
			if !containsPlatform(out, p) {
				out = append(out, p)
			}
		}
	}
	if len(out) == 0 {
		out = []specs.Platform{platform.Host()}
	}
	sort.Slice(out, func(i, j int) bool { return platform.Format(out[i]) < platform.Format(out[j]) })
	return out, nil
}

func containsPlatform(ps []specs.Platform, p specs.Platform) bool {
	for _, q := range ps {
		if platform.Equal(p, q) {
			return true
		}
	}
	return false
}

// collectItems lists (image, platform) pairs: every base image of every
// configured Dockerfile, [warm].extra and --image, for every warm platform.
func collectItems(c *cli.Context, cfg *config.Config, plan *warmPlan) error {
	var refs []string
	if cfg != nil {
		plan.images = len(cfg.Images)
		for _, name := range cfg.ImageNames() {
			if err := addBaseImages(cfg.Images[name], plan); err != nil {
				return err
			}
		}
		refs = append(refs, cfg.Warm.Extra...)
	}
	if err := addKanikoDockerfile(c, plan); err != nil {
		return err
	}
	for _, r := range splitCommas(c.StringSlice("image")) {
		if _, err := manifestParse(r); err != nil {
			return fmt.Errorf("--image %q: %w", r, err)
		}
		refs = append(refs, r)
	}
	for _, r := range refs {
		for _, p := range plan.platforms {
			plan.items = append(plan.items, warmer.Item{Ref: r, Platform: p})
		}
	}
	return nil
}

func addBaseImages(img config.Image, plan *warmPlan) error {
	df, where, err := readDockerfile(img)
	if errors.Is(err, errNoDockerfile) {
		return nil // reported by readDockerfile's caller below
	}
	if err != nil {
		return fmt.Errorf("images.%s: %w", img.Name, err)
	}
	for _, p := range plan.platforms {
		bases, err := dockerfile.BaseImages(df, where, dockerfile.Options{Args: img.Args, Target: img.Target, TargetPlatform: p, AllStages: true})
		if err != nil {
			return fmt.Errorf("images.%s: %w", img.Name, err)
		}
		for _, b := range bases {
			plan.items = append(plan.items, warmer.Item{Ref: b.Ref, Platform: b.Platform})
		}
	}
	return nil
}

var errNoDockerfile = errors.New("no readable Dockerfile")

// readDockerfile finds an image's Dockerfile in its context: a folder or a
// tar(.gz) file. Stdin and git contexts are only read at build time; warm
// says so and relies on [warm].extra for them.
func readDockerfile(img config.Image) ([]byte, string, error) {
	ctxPath := img.Context
	if ctxPath == "-" || isGitURL(ctxPath) {
		fmt.Fprintf(os.Stderr, "kiln: images.%s: context %q is read at build time; list its base images in [warm].extra\n", img.Name, ctxPath)
		return nil, "", errNoDockerfile
	}
	fi, err := os.Stat(ctxPath)
	if err != nil {
		return nil, "", fmt.Errorf("context: %w", err)
	}
	if fi.IsDir() {
		where := filepath.Join(ctxPath, filepath.FromSlash(img.Dockerfile))
		data, err := os.ReadFile(where)
		if err != nil {
			return nil, "", fmt.Errorf("dockerfile: %w", err)
		}
		return data, where, nil
	}
	data, err := dockerfileFromTar(ctxPath, img.Dockerfile)
	return data, ctxPath + ":" + img.Dockerfile, err
}

func dockerfileFromTar(file, want string) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("context: %w", err)
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(file, ".gz") || strings.HasSuffix(file, ".tgz") {
		gz, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("context %s: %w", file, err)
		}
		defer gz.Close()
		r = gz
	}
	tr := tar.NewReader(r)
	want = path.Clean(want)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil, fmt.Errorf("context %s: no %s in the archive: %w", file, want, fs.ErrNotExist)
		}
		if err != nil {
			return nil, fmt.Errorf("context %s: %w", file, err)
		}
		if path.Clean(strings.TrimPrefix(h.Name, "./")) == want && h.Typeflag == tar.TypeReg {
			return io.ReadAll(io.LimitReader(tr, 1<<20))
		}
	}
}

func isGitURL(s string) bool {
	for _, p := range []string{"git://", "git@", "ssh://"} {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return (strings.HasPrefix(s, "https://") || strings.HasPrefix(s, "http://")) &&
		(strings.Contains(s, ".git#") || strings.HasSuffix(s, ".git"))
}

func splitCommas(ss []string) []string {
	var out []string
	for _, s := range ss {
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

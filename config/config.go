// Package config reads build.toml, kiln's build file (see DESIGN.md, "build.toml
// (version 1)"), into plain data. Reading is strict: an unknown key, a value of
// the wrong type or a bad value is an error that names the file, the line and
// column, and the key path, and every such error wraps ErrInvalid. Relative
// paths come back absolute, resolved against the build file's folder; defaults
// are filled in. The package has no behaviour beyond that.
//
//	cfg, err := config.Load("build.toml")
//	if err != nil {
//		return err // build.toml:12:5: images.api.platforms[1]: invalid platform "linux/amd46": ...
//	}
//	for _, name := range cfg.ImageNames() {
//		img := cfg.Images[name]
//		fmt.Println(img.Context, platform.FormatAll(img.Platforms), img.Tags)
//	}
//
// A build file may be hostile: a CI builds whatever repository it is given.
//
//   - Project paths, images.*.context and images.*.output, must lead inside the
//     build file's folder, whether written relative or absolute: both the
//     cleaned path and the path its symlinks lead to (followed as far as they
//     exist). A build file reads and writes its own repository, not the
//     machine. images.*.dockerfile is relative to the context and stays inside
//     it. AllowPathsUnder (kiln's --allow fs=DIR) admits other folders.
//   - Machine paths, cache.dir, runner.kubernetes.kubeconfig and the ca,
//     client_cert and client_key of registries.*, name places on the machine
//     (a shared cache volume, credentials) and may be anywhere; a
//     CI that builds untrusted files sets its own (kiln's --cache-dir wins over
//     cache.dir).
//   - The file holds at most MaxFileSize bytes, nests at most MaxDepth levels,
//     holds at most MaxValues values and no key path over MaxKeyLength bytes.
//     One linear pass checks this before the TOML decoder, whose work grows
//     faster than the file, sees it: reading any file takes well under a
//     second.
package config

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	specs "github.com/opencontainers/image-spec/specs-go/v1"
)

// Defaults for keys left out of [cache].
const (
	DefaultMaxAge = 24 * time.Hour
	DefaultJobs   = 8
)

// Config is a validated build file.
type Config struct {
	File       string              // absolute path of the build file; "" when parsed from memory
	Dir        string              // its folder (the working directory for ""); relative paths resolve against it
	Cache      Cache               // [cache]
	Registries map[string]Registry // [registries."host[:port]"], keyed as written
	Warm       Warm                // [warm]
	Images     map[string]Image    // [images.NAME], keyed by NAME
	Runner     Runner              // [runner]
}

// Cache is where warmed images live and how they are fetched.
type Cache struct {
	Dir    string        // absolute, or "" if not set
	MaxAge time.Duration // entries older than this are re-checked; DefaultMaxAge if not set
	Jobs   int           // parallel downloads, 1..256; DefaultJobs if not set
	// Layers turns the layer cache on for every build (kiln build --cache).
	Layers bool
	// LayersRepo is the registry repository of the layer cache
	// (--cache-repo); "" keeps entries in Dir.
	LayersRepo string
	// LayersTTL is how long layer cache entries serve; 0 if not set (the
	// default, two weeks).
	LayersTTL time.Duration
}

// Registry holds per-registry settings. CA, ClientCert and ClientKey are
// machine paths (see the package doc), absolute, "" if not set.
type Registry struct {
	Insecure      bool     // plain HTTP or unverified TLS
	SkipTLSVerify bool     // TLS without checking the registry's certificate
	CA            string   // PEM certificates to trust for this registry besides the system's
	ClientCert    string   // PEM certificate presented to the registry (mutual TLS), with ClientKey
	ClientKey     string   // its PEM private key
	Mirrors       []string // host[:port][/path] each, tried in order
}

// Warm says what `kiln warm` fetches besides every image's FROM lines.
type Warm struct {
	Platforms []specs.Platform // nil if not set: the union of every image's platforms
	Extra     []string         // image references as written
}

// Image is one image to build.
type Image struct {
	Name              string            // the table's name
	Context           string            // absolute path of a folder or tar/tar.gz file, "-" for stdin, or a git URL as written
	Dockerfile        string            // relative to the context; "Dockerfile" if not set
	Target            string            // Dockerfile stage; "" for the last
	Platforms         []specs.Platform  // required: the index is pushed only if all succeed
	OptionalPlatforms []specs.Platform  // best effort: left out of the index if they fail
	Tags              []string          // references to push to, as written
	Output            string            // "oci:DIR" or "tar:FILE" with an absolute path; "" if not set
	Args              map[string]string // build arguments
	Labels            map[string]string // image labels
}

// Runner says where build-all runs each platform's build.
type Runner struct {
	Kind       string     // "local" (the default) or "kubernetes"
	Kubernetes Kubernetes // [runner.kubernetes], defaults filled in
}

// ImageNames returns the names of the images, sorted.
func (c *Config) ImageNames() []string {
	names := make([]string, 0, len(c.Images))
	for name := range c.Images {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// Load reads and validates a build file. Relative paths in it resolve against
// the file's folder.
func Load(path string, opts ...Option) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading build file: %w", err)
	}
	defer f.Close()
	// A build file named /dev/zero is not read for ever.
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading build file: %w", err)
	}
	return Parse(data, path, opts...)
}

// Parse validates data as if read from filename, which names the file in
// errors and whose folder relative paths resolve against; "" means the
// working directory.
func Parse(data []byte, filename string, opts ...Option) (*Config, error) {
	if err := checkSize(len(data), filename); err != nil {
		return nil, err
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	file, dir, err := locate(filename)
	if err != nil {
		return nil, err
	}
	rule, err := newPathRule(dir, o)
	if err != nil {
		return nil, err
	}
	src := strings.TrimPrefix(string(data), "\uFEFF") // the decoder counts offsets after a BOM
	ps := &problems{file: filename, loc: &locator{src: src}}
	if le := checkLimits(src); le != nil {
		at := ps.loc.at(le.off)
		return nil, &Error{File: filename, Line: at.line, Col: at.col, Key: le.key, Msg: le.msg}
	}
	raw, ok := decode(src, ps)
	if !ok {
		return nil, ps.err()
	}
	v := &validator{problems: ps, dir: dir, paths: rule}
	c := &Config{
		File:       file,
		Dir:        dir,
		Cache:      v.cache(raw.Cache),
		Registries: v.registries(raw.Registries),
		Warm:       v.warm(raw.Warm),
		Images:     v.images(raw.Images),
		Runner:     v.runner(raw.Runner),
	}
	if err := ps.err(); err != nil {
		return nil, err
	}
	return c, nil
}

// locate returns the absolute path of filename and its folder.
func locate(filename string) (file, dir string, err error) {
	if filename == "" {
		dir, err = os.Getwd()
		if err != nil {
			return "", "", fmt.Errorf("finding the working directory: %w", err)
		}
		return "", dir, nil
	}
	file, err = filepath.Abs(filename)
	if err != nil {
		return "", "", fmt.Errorf("resolving %s: %w", filename, err)
	}
	return file, filepath.Dir(file), nil
}

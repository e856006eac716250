package main

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/urfave/cli/v2"

	"kiln/config"
	"kiln/manifest"
)

// registryFlags are kaniko's registry flags, with kaniko's meanings, for a
// command whose registry traffic is a: plain HTTP, unverified TLS, a CA
// bundle or a client certificate per registry, mirrors. They add to
// build.toml's [registries."host"].
func registryFlags(a manifest.Access) []cli.Flag {
	var out []cli.Flag
	if a&manifest.Push != 0 {
		out = append(out,
			&cli.BoolFlag{Name: "insecure", Usage: "push to registries over plain HTTP (every destination; --insecure-registry for one)", EnvVars: envs("INSECURE")},
			&cli.BoolFlag{Name: "skip-tls-verify", Usage: "push without checking registries' TLS certificates (every destination; --skip-tls-verify-registry for one)", EnvVars: envs("SKIP_TLS_VERIFY")})
	}
	if a&manifest.Pull != 0 {
		out = append(out,
			&cli.BoolFlag{Name: "insecure-pull", Usage: "pull from registries over plain HTTP (every registry)", EnvVars: envs("INSECURE_PULL")},
			&cli.BoolFlag{Name: "skip-tls-verify-pull", Usage: "pull without checking registries' TLS certificates (every registry)", EnvVars: envs("SKIP_TLS_VERIFY_PULL")})
	}
	out = append(out,
		&cli.StringSliceFlag{Name: "insecure-registry", Usage: "reach this registry `HOST[:PORT]` over plain HTTP or unverified TLS (repeatable; insecure = true in build.toml)", EnvVars: envs("INSECURE_REGISTRY")},
		&cli.StringSliceFlag{Name: "skip-tls-verify-registry", Usage: "reach this registry `HOST[:PORT]` over TLS without checking its certificate (repeatable; skip_tls_verify = true in build.toml)", EnvVars: envs("SKIP_TLS_VERIFY_REGISTRY")},
		&cli.GenericFlag{Name: "registry-certificate", Value: &lines{}, Usage: "trust the CA certificates (or the registry's own certificate) in a PEM file for one registry, `HOST[:PORT]=FILE`, besides the system's (repeatable; ca in build.toml)", EnvVars: envs("REGISTRY_CERTIFICATE")},
		&cli.GenericFlag{Name: "registry-client-cert", Value: &lines{}, Usage: "present this client certificate and key to one registry (mutual TLS), `HOST[:PORT]=CERT,KEY` as PEM files (repeatable; client_cert and client_key in build.toml)", EnvVars: envs("REGISTRY_CLIENT_CERT")},
	)
	if a&manifest.Pull != 0 {
		out = append(out,
			&cli.StringSliceFlag{Name: "registry-mirror", Usage: "pull Docker Hub images from this mirror first, `HOST[:PORT][/PATH]` (repeatable, tried in order; mirrors of [registries.\"docker.io\"] in build.toml)", EnvVars: append(envs("REGISTRY_MIRROR"), "KANIKO_REGISTRY_MIRROR")},
			&cli.GenericFlag{Name: "registry-map", Value: &lines{}, Usage: "pull images of one registry from a mirror first, `ORIGINAL=MIRROR[/PATH]` (repeatable, or ';'-separated; mirrors in build.toml)", EnvVars: append(envs("REGISTRY_MAP"), "KANIKO_REGISTRY_MAP")},
			&cli.BoolFlag{Name: "skip-default-registry-fallback", Usage: "an image none of its registry's mirrors has is an error, not a pull from the registry itself (registries without mirrors are asked as usual)", EnvVars: envs("SKIP_DEFAULT_REGISTRY_FALLBACK")},
		)
	}
	return out
}

// lines collects a repeatable flag without splitting at commas, as
// cli.StringSliceFlag would: a file name or CERT,KEY may hold one. From the
// environment, one value a line.
type lines struct{ list []string }

func (l *lines) Set(s string) error {
	for _, v := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		if v = strings.TrimSpace(v); v != "" {
			l.list = append(l.list, v)
		}
	}
	return nil
}

func (l *lines) String() string { return "" }

func linesOf(c *cli.Context, flag string) []string {
	if l, ok := c.Generic(flag).(*lines); ok {
		return l.list
	}
	return nil
}

// registryOptions turns build.toml's [registries."host"] (cfg may be nil)
// and the registry flags into client options. A missing or unreadable
// file, or a value of the wrong form, is an error naming its flag or key.
func registryOptions(c *cli.Context, cfg *config.Config) ([]manifest.ClientOption, error) {
	regs, err := configRegistries(cfg)
	if err != nil {
		return nil, err
	}
	if err := applyRegistryFlags(c, regs); err != nil {
		return nil, err
	}
	opts := []manifest.ClientOption{manifest.WithRegistries(regs)}
	if c.Bool("insecure") {
		opts = append(opts, manifest.WithInsecure(manifest.Push))
	}
	if c.Bool("insecure-pull") {
		opts = append(opts, manifest.WithInsecure(manifest.Pull))
	}
	if c.Bool("skip-tls-verify") {
		opts = append(opts, manifest.WithSkipTLSVerify(manifest.Push))
	}
	if c.Bool("skip-tls-verify-pull") {
		opts = append(opts, manifest.WithSkipTLSVerify(manifest.Pull))
	}
	if c.Bool("skip-default-registry-fallback") {
		opts = append(opts, manifest.WithoutMirrorFallback())
	}
	return opts, nil
}

// configRegistries is build.toml's [registries] keyed by canonical registry
// name ("docker.io" and "index.docker.io" are one), CA and client
// certificate files read.
func configRegistries(cfg *config.Config) (map[string]manifest.RegistryConfig, error) {
	regs := map[string]manifest.RegistryConfig{}
	if cfg == nil {
		return regs, nil
	}
	for _, host := range slices.Sorted(maps.Keys(cfg.Registries)) {
		r := cfg.Registries[host]
		key, err := canonicalRegistry(host)
		if err != nil {
			return nil, err // config checked it
		}
		rc := regs[key]
		rc.Insecure = rc.Insecure || r.Insecure
		rc.SkipTLSVerify = rc.SkipTLSVerify || r.SkipTLSVerify
		rc.Mirrors = appendNew(rc.Mirrors, r.Mirrors...)
		at := fmt.Sprintf("%s: registries.%q", cfg.File, host)
		if r.CA != "" {
			if rc.CA, err = manifest.ReadCA(r.CA); err != nil {
				return nil, fmt.Errorf("%s.ca: %w", at, err)
			}
		}
		if r.ClientCert != "" {
			if rc.ClientCert, err = manifest.ReadClientCert(r.ClientCert, r.ClientKey); err != nil {
				return nil, fmt.Errorf("%s.client_cert: %w", at, err)
			}
		}
		regs[key] = rc
	}
	return regs, nil
}

// applyRegistryFlags adds the per-registry flags to regs: a flag's CA or
// client certificate replaces build.toml's, its mirrors are tried before
// build.toml's.
func applyRegistryFlags(c *cli.Context, regs map[string]manifest.RegistryConfig) error {
	update := func(flag, host string, f func(*manifest.RegistryConfig) error) error {
		key, err := canonicalRegistry(host)
		if err != nil {
			return fmt.Errorf("--%s %q: %w", flag, host, err)
		}
		rc := regs[key]
		if err := f(&rc); err != nil {
			return err
		}
		regs[key] = rc
		return nil
	}
	for _, h := range splitCommas(c.StringSlice("insecure-registry")) {
		if err := update("insecure-registry", h, func(rc *manifest.RegistryConfig) error { rc.Insecure = true; return nil }); err != nil {
			return err
		}
	}
	for _, h := range splitCommas(c.StringSlice("skip-tls-verify-registry")) {
		if err := update("skip-tls-verify-registry", h, func(rc *manifest.RegistryConfig) error { rc.SkipTLSVerify = true; return nil }); err != nil {
			return err
		}
	}
	for _, v := range linesOf(c, "registry-certificate") {
		host, file, err := parseRegistryCertificate(v)
		if err == nil {
			err = update("registry-certificate", host, func(rc *manifest.RegistryConfig) (err error) {
				rc.CA, err = manifest.ReadCA(file)
				return err
			})
		}
		if err != nil {
			return fmt.Errorf("--registry-certificate %s: %w", v, err)
		}
	}
	for _, v := range linesOf(c, "registry-client-cert") {
		host, cert, key, err := parseRegistryClientCert(v)
		if err == nil {
			err = update("registry-client-cert", host, func(rc *manifest.RegistryConfig) (err error) {
				rc.ClientCert, err = manifest.ReadClientCert(cert, key)
				return err
			})
		}
		if err != nil {
			return fmt.Errorf("--registry-client-cert %s: %w", v, err)
		}
	}
	return applyMirrorFlags(c, regs)
}

// applyMirrorFlags: --registry-mirror M is --registry-map docker.io=M, as
// in kaniko; the flags' mirrors come before build.toml's.
func applyMirrorFlags(c *cli.Context, regs map[string]manifest.RegistryConfig) error {
	var pairs [][2]string
	for _, m := range splitCommas(c.StringSlice("registry-mirror")) {
		if err := checkMirror(m); err != nil {
			return fmt.Errorf("--registry-mirror %q: %w", m, err)
		}
		pairs = append(pairs, [2]string{name.DefaultRegistry, m})
	}
	for _, v := range linesOf(c, "registry-map") {
		more, err := parseRegistryMap(v)
		if err != nil {
			return fmt.Errorf("--registry-map %q: %w", v, err)
		}
		pairs = append(pairs, more...)
	}
	flagMirrors := map[string][]string{}
	var order []string
	for _, p := range pairs {
		key, err := canonicalRegistry(p[0])
		if err != nil {
			return err // checked above
		}
		if _, ok := flagMirrors[key]; !ok {
			order = append(order, key)
		}
		flagMirrors[key] = appendNew(flagMirrors[key], strings.TrimSuffix(p[1], "/"))
	}
	for _, key := range order {
		rc := regs[key]
		rc.Mirrors = appendNew(flagMirrors[key], rc.Mirrors...)
		regs[key] = rc
	}
	return nil
}

// parseRegistryCertificate reads kaniko's HOST=FILE.
func parseRegistryCertificate(v string) (host, file string, err error) {
	host, file, ok := strings.Cut(v, "=")
	if !ok || host == "" || file == "" {
		return "", "", errors.New("want HOST[:PORT]=FILE")
	}
	return host, file, checkRegistryHost(host)
}

// parseRegistryClientCert reads kaniko's HOST=CERT,KEY.
func parseRegistryClientCert(v string) (host, cert, key string, err error) {
	host, files, ok := strings.Cut(v, "=")
	parts := strings.Split(files, ",")
	if !ok || host == "" || len(parts) != 2 || parts[0] == "" || parts[1] == "" {
		return "", "", "", errors.New("want HOST[:PORT]=CERT,KEY (two PEM files: the certificate, then its key)")
	}
	return host, parts[0], parts[1], checkRegistryHost(host)
}

// parseRegistryMap reads kaniko's ORIGINAL=MIRROR, several joined by ';'.
func parseRegistryMap(v string) ([][2]string, error) {
	var out [][2]string
	for _, kv := range strings.Split(v, ";") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		orig, mirror, ok := strings.Cut(kv, "=")
		if !ok || orig == "" || mirror == "" {
			return nil, fmt.Errorf("%q: want ORIGINAL=MIRROR (HOST[:PORT]=HOST[:PORT][/PATH])", kv)
		}
		if err := checkRegistryHost(orig); err != nil {
			return nil, fmt.Errorf("%q: %w", orig, err)
		}
		if err := checkMirror(mirror); err != nil {
			return nil, fmt.Errorf("%q: %w", mirror, err)
		}
		out = append(out, [2]string{orig, mirror})
	}
	if len(out) == 0 {
		return nil, errors.New("want ORIGINAL=MIRROR")
	}
	return out, nil
}

// checkRegistryHost accepts HOST[:PORT] and nothing more.
func checkRegistryHost(host string) error {
	if strings.Contains(host, "://") {
		return fmt.Errorf("want HOST[:PORT] without a scheme, got %q", host)
	}
	if strings.Contains(host, "/") {
		return fmt.Errorf("want HOST[:PORT] without a path, got %q", host)
	}
	if _, err := name.NewRegistry(host, name.StrictValidation); err != nil {
		return err
	}
	return nil
}

// checkMirror accepts HOST[:PORT] with an optional /PATH prefix.
func checkMirror(m string) error {
	m = strings.TrimSuffix(m, "/")
	host, _, hasPath := strings.Cut(m, "/")
	if strings.Contains(m, "://") {
		return fmt.Errorf("want HOST[:PORT][/PATH] without a scheme")
	}
	if err := checkRegistryHost(host); err != nil {
		return err
	}
	if hasPath {
		if _, err := name.NewRepository(m); err != nil {
			return err
		}
	}
	return nil
}

func canonicalRegistry(host string) (string, error) {
	if err := checkRegistryHost(host); err != nil {
		return "", err
	}
	reg, err := name.NewRegistry(host)
	if err != nil {
		return "", err
	}
	return reg.Name(), nil
}

// appendNew appends the values of add that list lacks.
func appendNew(list []string, add ...string) []string {
	out := slices.Clone(list)
	for _, v := range add {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// newClient is the registry client of a command: build.toml's registries
// (cfg may be nil) and the registry flags, and the retry flags if the
// command has them.
func newClient(c *cli.Context, cfg *config.Config, log *slog.Logger, more ...manifest.ClientOption) (*manifest.Client, error) {
	var retry []manifest.ClientOption
	if hasFlag(c, "retries") {
		var err error
		if retry, err = retryOptions(c); err != nil {
			return nil, err
		}
	}
	regs, err := registryOptions(c, cfg)
	if err != nil {
		return nil, err
	}
	return manifest.NewClient(slices.Concat(retry, regs, []manifest.ClientOption{manifest.WithClientLogger(log), manifest.WithUserAgent("kiln/" + version)}, more)...)
}

func hasFlag(c *cli.Context, flag string) bool {
	for _, f := range c.Command.Flags {
		if slices.Contains(f.Names(), flag) {
			return true
		}
	}
	return false
}

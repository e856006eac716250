package main

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"kiln/builder"
	"kiln/builder/run"
)

// runFlags are the flags of RUN steps, shared by build and build-all.
func runFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "isolation", Value: "auto", Usage: "how RUN steps are isolated: auto, chroot (root: namespaces + chroot), rootless (a user namespace), container (the container's own /)", EnvVars: envs("ISOLATION")},
		&cli.StringFlag{Name: "snapshot", Value: builder.SnapshotAuto, Usage: "how a RUN step's change is found: auto, overlay (cost follows the change) or walk (stat-compare the tree)", EnvVars: envs("SNAPSHOT")},
		&cli.BoolFlag{Name: "force", Usage: "with --isolation container: replace / even where no container was detected or / holds files kiln did not put there", EnvVars: envs("FORCE")},
		&cli.StringSliceFlag{Name: "secret", Usage: "a secret for RUN --mount=type=secret: `id=ID,src=FILE` or id=ID,env=VAR (repeatable); never in a layer, the history or a log", EnvVars: envs("SECRET")},
	}
}

// runOptions turns the RUN flags into builder options. cacheDir holds the
// RUN --mount=type=cache folders (under .kiln/run-cache).
func runOptions(c *cli.Context, cacheDir string) ([]builder.Option, error) {
	var opts []builder.Option
	switch iso := c.String("isolation"); iso {
	case "", "auto":
	case string(run.Chroot), string(run.Rootless), string(run.Container):
		opts = append(opts, builder.WithIsolation(run.Isolation(iso)))
	default:
		return nil, fmt.Errorf("--isolation %q: want auto, chroot, rootless or container", iso)
	}
	switch s := c.String("snapshot"); s {
	case builder.SnapshotAuto, builder.SnapshotOverlay, builder.SnapshotWalk:
		opts = append(opts, builder.WithSnapshot(s))
	default:
		return nil, fmt.Errorf("--snapshot %q: want auto, overlay or walk", s)
	}
	secrets := map[string]builder.Secret{}
	for _, v := range c.StringSlice("secret") {
		id, s, err := parseSecret(v)
		if err != nil {
			return nil, fmt.Errorf("--secret %q: %w", v, err)
		}
		if _, dup := secrets[id]; dup {
			return nil, fmt.Errorf("--secret: id %q given twice", id)
		}
		secrets[id] = s
	}
	if len(secrets) > 0 {
		opts = append(opts, builder.WithSecrets(secrets))
	}
	if cacheDir != "" {
		opts = append(opts, builder.WithRunCache(filepath.Join(cacheDir, ".kiln", "run-cache")), builder.WithKeep(cacheDir))
	}
	if c.Bool("force") {
		opts = append(opts, builder.WithForce(true))
	}
	return opts, nil
}

// parseSecret reads id=ID,src=FILE (also source=, or a bare FILE as in
// buildx when only id is left out: the file's base name is the id) or
// id=ID,env=VAR.
func parseSecret(v string) (string, builder.Secret, error) {
	var id string
	var s builder.Secret
	for _, f := range strings.Split(v, ",") {
		k, val, ok := strings.Cut(f, "=")
		if !ok {
			return "", s, fmt.Errorf("%q is not KEY=VALUE (want id=ID,src=FILE or id=ID,env=VAR)", f)
		}
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "id":
			id = val
		case "src", "source":
			s.File = val
		case "env":
			s.Env = val
		case "type":
			if val != "file" && val != "env" {
				return "", s, fmt.Errorf("type %q: want file or env", val)
			}
		default:
			return "", s, fmt.Errorf("unknown key %q (want id, src, env)", k)
		}
	}
	switch {
	case s.File != "" && s.Env != "":
		return "", s, fmt.Errorf("give src or env, not both")
	case s.File == "" && s.Env == "":
		return "", s, fmt.Errorf("no src=FILE or env=VAR")
	case id == "" && s.Env != "":
		id = s.Env
	case id == "":
		id = filepath.Base(s.File)
	}
	return id, s, nil
}

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
		&cli.StringSliceFlag{Name: "security-opt", Usage: "loosen or replace RUN confinement as docker does: `seccomp=unconfined`, seccomp=PROFILE.json (Docker's format), systempaths=unconfined (repeatable)", EnvVars: envs("SECURITY_OPT")},
		&cli.Int64Flag{Name: "pids-limit", Value: 0, Usage: fmt.Sprintf("most processes a RUN step may have at once (a pids cgroup; 0: %d, -1: no limit)", run.DefaultPidsLimit), EnvVars: envs("PIDS_LIMIT")},
		&cli.StringSliceFlag{Name: "ulimit", Usage: "a resource limit for RUN steps, as docker: `NAME=SOFT[:HARD]`, e.g. nofile=1024:4096, nproc=512 (repeatable)", EnvVars: envs("ULIMIT")},
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
	sec, err := securityOptions(c)
	if err != nil {
		return nil, err
	}
	return append(opts, builder.WithSecurity(sec)), nil
}

// securityOptions reads --security-opt, --pids-limit and --ulimit.
func securityOptions(c *cli.Context) (run.Security, error) {
	var sec run.Security
	for _, v := range c.StringSlice("security-opt") {
		k, val, ok := strings.Cut(v, "=")
		if !ok {
			k, val, ok = strings.Cut(v, ":") // docker's older seccomp:unconfined
		}
		switch {
		case !ok:
			return sec, fmt.Errorf("--security-opt %q: want seccomp=unconfined, seccomp=PROFILE.json or systempaths=unconfined", v)
		case k == "seccomp" && val == "unconfined":
			sec.SeccompUnconfined, sec.Seccomp = true, nil
		case k == "seccomp":
			f, err := run.LoadSeccomp(val)
			if err != nil {
				return sec, fmt.Errorf("--security-opt seccomp: %w", err)
			}
			sec.Seccomp, sec.SeccompUnconfined = f, false
		case k == "systempaths" && val == "unconfined":
			sec.SystemPathsUnconfined = true
		case k == "no-new-privileges", k == "apparmor", k == "label":
			return sec, fmt.Errorf("--security-opt %q: kiln does not support %s (it takes seccomp= and systempaths=)", v, k)
		default:
			return sec, fmt.Errorf("--security-opt %q: unknown option (want seccomp=unconfined, seccomp=PROFILE.json or systempaths=unconfined)", v)
		}
	}
	if sec.PidsLimit = c.Int64("pids-limit"); sec.PidsLimit < -1 {
		return sec, fmt.Errorf("--pids-limit %d: want a count, 0 for the default (%d) or -1 for no limit", sec.PidsLimit, run.DefaultPidsLimit)
	}
	for _, v := range c.StringSlice("ulimit") {
		l, err := run.ParseUlimit(v)
		if err != nil {
			return sec, fmt.Errorf("--ulimit: %w", err)
		}
		sec.Rlimits = append(sec.Rlimits, l)
	}
	return sec, nil
}

// parseSecret reads id=ID,src=FILE (also source=, or a bare FILE as in
// buildx when only id is left out: the file's base name is the id) or
// id=ID,env=VAR.
func parseSecret(v string) (string, builder.Secret, error) {
	var id, typ string
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
			typ = val
		default:
			return "", s, fmt.Errorf("unknown key %q (want id, src, env)", k)
		}
	}
	if typ == "env" && s.Env == "" {
		s.Env, s.File = s.File, "" // type=env,src=VAR, as buildx and kaniko's forks read it
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

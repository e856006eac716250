package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/urfave/cli/v2"

	"kiln/config"
	"kiln/platform"
)

// envs names the environment variable of a flag: KILN_<FLAG>.
func envs(flag string) []string { return []string{"KILN_" + flag} }

func configFlag() cli.Flag {
	return &cli.StringFlag{Name: "config", Aliases: []string{"c"}, Value: "build.toml", Usage: "the build.toml to read (optional for warm when --image is given)", EnvVars: envs("CONFIG")}
}

func progressFlag() cli.Flag {
	return &cli.StringFlag{Name: "progress", Value: "auto", Usage: "auto (a live display on a terminal, log lines otherwise), tty or plain", EnvVars: envs("PROGRESS")}
}

// loadConfig reads --config. A missing default ./build.toml is no error
// (warm can run on flags alone); a missing file named explicitly is.
func loadConfig(c *cli.Context) (*config.Config, error) {
	path := c.String("config")
	copts, err := configOptions(c)
	if err != nil {
		return nil, err
	}
	cfg, err := config.Load(path, copts...)
	if err == nil {
		return cfg, nil
	}
	if errors.Is(err, fs.ErrNotExist) && !c.IsSet("config") {
		return nil, nil
	}
	return nil, err
}

// defaultCacheDir is where a laptop keeps its cache: $XDG_CACHE_HOME/kiln.
func defaultCacheDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "kiln")
	}
	return filepath.Join(os.TempDir(), "kiln-cache")
}

func manifestParse(ref string) (name.Reference, error) { return name.ParseReference(ref) }

func hostString() string {
	return fmt.Sprintf("%s, %s", platform.Format(platform.Host()), runtime.Version())
}

func contextWithTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d)
}

// allowFSFlag lets build.toml's contexts and outputs reach outside its
// folder, as buildx bake's --allow fs=: a build file from a repository is
// input that may be hostile.
func allowFSFlag() cli.Flag {
	return &cli.StringSliceFlag{Name: "allow", Usage: "let build.toml's contexts and outputs lie under `fs=DIR` although it is outside build.toml's folder; fs=* allows any (repeatable)", EnvVars: envs("ALLOW")}
}

// configOptions turns --allow into config options.
func configOptions(c *cli.Context) ([]config.Option, error) {
	var dirs []string
	for _, a := range c.StringSlice("allow") {
		dir, ok := strings.CutPrefix(a, "fs=")
		if !ok || dir == "" {
			return nil, fmt.Errorf("--allow %q: want fs=DIR (or fs=*)", a)
		}
		if dir == "*" {
			dir = "/"
		}
		dirs = append(dirs, dir)
	}
	if len(dirs) == 0 {
		return nil, nil
	}
	return []config.Option{config.AllowPathsUnder(dirs...)}, nil
}

// Command kiln builds container images without a Docker daemon and keeps a
// shared cache of their base images warm. See `kiln --help`.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"kiln/builder/run"
	"kiln/manifest"
)

// version is set at link time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

// Exit codes.
const (
	exitFailed = 1 // the work was attempted and some of it failed
	exitUsage  = 2 // bad flags, bad build.toml, bad Dockerfile: nothing was attempted
)

func main() {
	run.MaybeInit() // in a RUN step's init (kiln re-executed): set up, exec the command, never return
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// The first SIGTERM or SIGINT cancels ctx, and every stage stops and
		// cleans up; a second one ends kiln at once, whatever it is doing.
		<-ctx.Done()
		stop()
	}()
	if dir := dockerConfigDir(os.Getenv, kanikoDockerConfig); dir != "" {
		os.Setenv("DOCKER_CONFIG", dir) // kaniko's credentials, read by every registry client
	}
	app := newApp()
	stopProfiles := startProfiles(os.Getenv, os.Stderr)
	err := app.RunContext(ctx, reorderArgs(app, kanikoArgs(os.Args, buildFlags())))
	stopProfiles()
	if err == nil {
		return
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		if err.Error() != "" {
			// No upload session or signature in any message, and a registry's
			// error document readable (not a Go map) when the error is kept:
			// cli.Exit(err, code) rather than cli.Exit(err.Error(), code).
			fmt.Fprintln(os.Stderr, "kiln:", manifest.Describe(err))
		}
		os.Exit(ec.ExitCode())
	}
	fmt.Fprintln(os.Stderr, "kiln:", manifest.Describe(err))
	os.Exit(exitFailed)
}

func newApp() *cli.App {
	return &cli.App{
		Name:    "kiln",
		Usage:   "build container images without a Docker daemon, for every platform, natively",
		Version: version,
		Description: `kiln reads one build.toml and does three jobs, in Kubernetes and on a laptop alike:

   kiln warm        pre-pull every base image, for every platform, into a shared cache (an OCI layout)
   kiln build       build one platform of an image from a Dockerfile, in userspace, RUN included
   kiln build-all   build every platform natively (or COPY-only cross builds) and push one index
   kiln index       stitch existing per-platform images into one multi-platform index

Flags may come before or after NAMEs and the other arguments; -- ends them. Every flag can
also be set by an environment variable KILN_<FLAG>, e.g. KILN_CACHE_DIR.`,
		// Values such as --build-arg LIST=a,b, --label and --secret id=x,src=f
		// hold commas: list flags (platforms, tags, images) split themselves.
		DisableSliceFlagSeparator: true,
		Commands: []*cli.Command{
			warmCommand(),
			buildCommand(),
			buildAllCommand(),
			indexCommand(),
			pushCommand(),
			renderCommand(),
			versionCommand(),
			completionCommand(),
			completeCommand(),
		},
		ExitErrHandler: func(*cli.Context, error) {}, // main prints and exits
		CommandNotFound: func(c *cli.Context, cmd string) {
			fmt.Fprintf(c.App.ErrWriter, "kiln: no command %q (see kiln --help)\n", cmd)
			os.Exit(exitUsage)
		},
		OnUsageError: usageError,
	}
}

// usageError turns a flag parsing error into exit status 2 with a pointer to
// --help. urfave/cli consults the command's handler for its own flags, so
// every command sets it too.
func usageError(c *cli.Context, err error, _ bool) error {
	cmd := c.App.Name
	if c.Command != nil && c.Command.Name != "" && c.Command.Name != c.App.Name { // the app's own flags: "kiln --help"
		cmd += " " + c.Command.Name
	}
	return cli.Exit(fmt.Sprintf("%v (see %s --help)", err, cmd), exitUsage)
}

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print kiln's version and the platform it runs on",
		Action: func(c *cli.Context) error {
			fmt.Fprintf(c.App.Writer, "kiln %s (%s)\n", version, hostString())
			return nil
		},
	}
}

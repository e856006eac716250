package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// kiln's image keeps kaniko's entry points, so that a kaniko pod spec or CI
// job works with only the image name changed: /kaniko/executor and
// /kaniko/warmer are links to /kiln/kiln, which reads its name.
const (
	kanikoExecutor = "executor" // kaniko's build: kiln build
	kanikoWarmer   = "warmer"   // kaniko's cache warmer: kiln warm

	// kanikoContext is kaniko's default --context.
	kanikoContext = "/workspace/"
	// kanikoDockerConfig is where kaniko's users mount registry credentials
	// (kaniko's image sets DOCKER_CONFIG to it).
	kanikoDockerConfig = "/kaniko/.docker"
)

// rootFlags are the flags kiln takes before a command; any other flag
// first is kaniko's executor being run with only args (its image's
// entrypoint) against kiln's image.
var rootFlags = []string{"--help", "-h", "--version", "-v", "--generate-bash-completion"}

// kanikoArgs turns kaniko's invocations into kiln's: the binary run as
// "executor", or run with a build flag where kiln wants a command, is kiln
// build with kaniko's defaults (--context /workspace/, -c for --context);
// run as "warmer" it is kiln warm.
func kanikoArgs(args []string) []string {
	if len(args) == 0 {
		return args
	}
	rest := args[1:]
	switch name := filepath.Base(args[0]); {
	case name == kanikoWarmer:
		return append([]string{"kiln", "warm"}, rest...)
	case name == kanikoExecutor && len(rest) > 0 && rest[0] == "version":
		return []string{"kiln", "version"}
	case name == kanikoExecutor, len(rest) > 0 && strings.HasPrefix(rest[0], "-") && !slices.Contains(rootFlags, rest[0]):
		out := []string{"kiln", "build", "--context", kanikoContext}
		for i, a := range rest {
			switch {
			case a == "--":
				return append(out, rest[i:]...)
			case a == "-c":
				a = "--context"
			case strings.HasPrefix(a, "-c="):
				a = "--context=" + a[len("-c="):]
			}
			out = append(out, a)
		}
		return out
	}
	return args
}

// dockerConfigDir is the folder whose config.json holds registry
// credentials, when kiln must name it: $DOCKER_CONFIG when set (nothing to
// do), else kaniko's /kaniko/.docker when it holds a config.json, else the
// default (~/.docker) — "" when nothing is to be set.
func dockerConfigDir(getenv func(string) string, kanikoDir string) string {
	if getenv("DOCKER_CONFIG") != "" {
		return ""
	}
	if fi, err := os.Stat(filepath.Join(kanikoDir, "config.json")); err == nil && fi.Mode().IsRegular() {
		return kanikoDir
	}
	return ""
}

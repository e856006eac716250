package main

import (
	"os"
	"path/filepath"
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

// kanikoArgs turns kaniko's invocations into kiln's: the binary run as
// "executor", or run with one of kiln build's flags where kiln wants a
// command (kaniko's args against kiln's image, whose entrypoint is
// /kiln/kiln), is kiln build with kaniko's defaults (--context /workspace/,
// -c for --context); run as "warmer" it is kiln warm. buildFlag tells kiln
// build's flags ("--context", "-f").
func kanikoArgs(args []string, buildFlag func(string) bool) []string {
	if len(args) == 0 {
		return args
	}
	rest := args[1:]
	first := ""
	if len(rest) > 0 {
		first, _, _ = strings.Cut(rest[0], "=")
	}
	switch name := filepath.Base(args[0]); {
	case name == kanikoWarmer:
		return append([]string{"kiln", "warm"}, rest...)
	case name == kanikoExecutor && first == "version":
		return []string{"kiln", "version"}
	case name == kanikoExecutor, first == "-c" || strings.HasPrefix(first, "-") && buildFlag(first):
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

// buildFlags tells kiln build's flags, as written on a command line.
func buildFlags() func(string) bool {
	set := map[string]bool{}
	for _, f := range buildCommand().Flags {
		for _, n := range f.Names() {
			if len(n) == 1 {
				set["-"+n] = true
			} else {
				set["--"+n] = true
			}
		}
	}
	// kiln's own -v and -h (version, help) stay kiln's: "kiln -v" is not a
	// kaniko pod's args, whose first word is --dockerfile or --context.
	delete(set, "-v")
	delete(set, "-h")
	return func(arg string) bool { return set[arg] }
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

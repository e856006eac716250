package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"kiln/builder"
	"kiln/builder/buildcontext"
)

// contextFlags are kaniko's flags about the build context that kiln build
// takes as kaniko does.
func contextFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "context-sub-path", Usage: "use this `FOLDER` inside the context as its root (kaniko's flag; after a git URL's :subdir)", EnvVars: envs("CONTEXT_SUB_PATH")},
		&cli.StringSliceFlag{Name: "git", Usage: "git context settings, kaniko's: `branch=B,single-branch=BOOL,recurse-submodules=BOOL,insecure-skip-tls=BOOL` (repeatable)", EnvVars: envs("GIT")},
	}
}

// applyContextFlags takes --context-sub-path, --git, kaniko's git
// variables (GIT_PULL_METHOD, GIT_USERNAME, GIT_PASSWORD, GIT_TOKEN) and
// resolves --dockerfile as kaniko does.
func applyContextFlags(c *cli.Context, r *builder.Request) error {
	setString(c, "context-sub-path", &r.ContextSubPath)
	g, err := gitOptions(c.StringSlice("git"), os.Getenv)
	if err != nil {
		return err
	}
	r.Git = g
	// build-all's pods name the Dockerfile inside their blob:// context:
	// whatever lies in the pod's working folder must not be taken instead.
	if c.IsSet("dockerfile") && !strings.HasPrefix(r.Context, blobScheme) {
		if r.Dockerfile, err = resolveDockerfile(r.Dockerfile, contextRoot(*r)); err != nil {
			return err
		}
	}
	return nil
}

// gitOptionKey matches where a --git value's next setting starts: a
// branch name may hold a comma, a setting name never does.
var gitOptionKey = regexp.MustCompile(`,(branch|single-branch|recurse-submodules|insecure-skip-tls)=`)

// gitOptions reads --git values (each one KEY=VALUE, or several separated
// by commas) and kaniko's git variables through getenv.
func gitOptions(values []string, getenv func(string) string) (buildcontext.GitOptions, error) {
	g := buildcontext.GitOptions{
		PullMethod: getenv("GIT_PULL_METHOD"),
		Username:   getenv("GIT_USERNAME"),
		Password:   getenv("GIT_PASSWORD"),
		Token:      getenv("GIT_TOKEN"),
	}
	if g.PullMethod != "" && g.PullMethod != "http" && g.PullMethod != "https" {
		g.PullMethod = "" // kaniko falls back to https for anything else
	}
	for _, v := range values {
		for _, kv := range strings.Split(gitOptionKey.ReplaceAllString(v, "\x00$1="), "\x00") {
			if err := setGitOption(&g, kv); err != nil {
				return g, err
			}
		}
	}
	return g, nil
}

func setGitOption(g *buildcontext.GitOptions, kv string) error {
	k, v, ok := strings.Cut(kv, "=")
	if !ok {
		return fmt.Errorf("--git %q: want KEY=VALUE (branch, single-branch, recurse-submodules, insecure-skip-tls)", kv)
	}
	if k == "branch" {
		g.Branch = v
		return nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return fmt.Errorf("--git %s=%q: want true or false", k, v)
	}
	switch k {
	case "single-branch":
		g.SingleBranch = b
	case "recurse-submodules":
		g.RecurseSubmodules = b
	case "insecure-skip-tls":
		g.InsecureSkipTLS = b
	default:
		return fmt.Errorf("--git %q: unknown setting (branch, single-branch, recurse-submodules, insecure-skip-tls)", k)
	}
	return nil
}

// contextRoot is the local folder a request's context root is, or "" when
// the context is not a local folder (a tar, stdin, git, a URL).
func contextRoot(r builder.Request) string {
	dir := buildcontext.LocalPath(r.Context)
	if fi, err := os.Stat(dir); dir == "" || dir == "-" || err != nil || !fi.IsDir() {
		return ""
	}
	return filepath.Join(dir, r.ContextSubPath)
}

// resolveDockerfile finds --dockerfile as kaniko does (and docker build -f
// for a local context): an absolute path, or a path that exists relative to
// the working directory, is that file; otherwise it is relative to the
// context root (after --context-sub-path). root is the context's local
// folder, "" when the context is fetched or unpacked: then only the build
// can tell whether the file is there.
func resolveDockerfile(p, root string) (string, error) {
	if strings.HasPrefix(p, "http://") || strings.HasPrefix(p, "https://") {
		return "", fmt.Errorf("--dockerfile %s: kiln reads the Dockerfile from a file (download it first, or give a context URL holding it)", p)
	}
	if filepath.IsAbs(p) {
		return p, nil
	}
	if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
		return filepath.Abs(p)
	}
	if root == "" {
		return p, nil
	}
	if _, err := os.Stat(filepath.Join(root, p)); errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("--dockerfile %s: no such file in the working directory nor in the context %s", p, root)
	}
	return p, nil
}

package buildcontext

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// gitRunner runs the system git in one checkout folder, hardened: no
// prompts, no hooks, no templates, no ext:: transport, and the file
// transport only when the user asked for a file:// URL (never for
// submodules, which git runs as not coming from the user).
type gitRunner struct {
	bin, dir, fileProtocol string
	env                    []string
}

func newGitRunner(bin string) *gitRunner {
	return &gitRunner{bin: bin, fileProtocol: "never", env: append(gitEnv(os.Environ()), "GIT_TERMINAL_PROMPT=0")}
}

// gitEnv drops the variables that would point git at another repository
// than the checkout folder (kiln may itself run from a git hook).
func gitEnv(env []string) []string {
	return slices.DeleteFunc(slices.Clone(env), func(kv string) bool {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
			"GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_COMMON_DIR", "GIT_NAMESPACE", "GIT_PREFIX":
			return true
		}
		return false
	})
}

// withConfig adds git configuration through the environment
// (GIT_CONFIG_COUNT, git 2.31+), after any the user set there: a
// credential never shows in a process listing, and it reaches the git
// processes that submodules run too.
func withConfig(env []string, kv ...[2]string) []string {
	n := 0
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "GIT_CONFIG_COUNT="); ok {
			n, _ = strconv.Atoi(v)
		}
	}
	env = slices.DeleteFunc(env, func(e string) bool { return strings.HasPrefix(e, "GIT_CONFIG_COUNT=") })
	for _, c := range kv {
		env = append(env, fmt.Sprintf("GIT_CONFIG_KEY_%d=%s", n, c[0]), fmt.Sprintf("GIT_CONFIG_VALUE_%d=%s", n, c[1]))
		n++
	}
	return append(env, fmt.Sprintf("GIT_CONFIG_COUNT=%d", n))
}

// checkout does what Docker's classic builder does: init, shallow fetch of
// the ref (a full fetch when a commit cannot be fetched by itself, or when
// a commit of the ref's history is asked for), detached checkout, recursive
// submodules. The .git folders are then removed, as BuildKit leaves them out
// of the context.
func (g *gitRunner) checkout(ctx context.Context, dir string, f gitFetch) error {
	g.dir = dir
	if strings.HasPrefix(f.Remote, "file://") {
		g.fileProtocol = "user"
	}
	var config [][2]string
	if f.sendsAuth(f.Remote) {
		// Scoped to the remote's host: a submodule elsewhere gets nothing.
		config = append(config, [2]string{"http." + f.host + "/.extraHeader", "Authorization: " + f.basicAuth()})
	}
	if f.insecure {
		config = append(config, [2]string{"http.sslVerify", "false"})
	}
	if len(config) > 0 {
		g.env = withConfig(g.env, config...)
	}
	if _, err := g.run(ctx, "init", "--quiet", "--template="); err != nil {
		return err
	}
	if _, err := g.run(ctx, "remote", "add", "origin", f.Remote); err != nil {
		return err
	}
	rev, err := g.fetch(ctx, f.Ref, f.Commit == "")
	if err != nil {
		return fmt.Errorf("fetching %s: %w", orHead(f.Ref), err)
	}
	if f.Commit != "" {
		rev = f.Commit
	}
	commit, err := g.run(ctx, "rev-parse", "--verify", rev+"^{commit}")
	if err != nil {
		return fmt.Errorf("%s is not a commit of the repository: %w", what(f), err)
	}
	if _, err := g.run(ctx, "checkout", "--quiet", "--detach", commit); err != nil {
		return fmt.Errorf("checking out %s: %w", what(f), err)
	}
	if _, err := os.Lstat(filepath.Join(g.dir, ".gitmodules")); err == nil && f.recurse {
		if _, err := g.run(ctx, "submodule", "update", "--init", "--recursive", "--depth", "1"); err != nil {
			return fmt.Errorf("updating submodules: %w", err)
		}
	}
	return removeGitDirs(g.dir)
}

// what names the commit a fetch checks out, for messages.
func what(f gitFetch) string {
	if f.Commit != "" {
		return f.Commit
	}
	return orHead(f.Ref)
}

// fetch fetches ref, shallow if it may, and returns what to check out.
func (g *gitRunner) fetch(ctx context.Context, ref string, shallow bool) (string, error) {
	args := []string{"fetch", "origin", "--", orHead(ref)}
	if shallow {
		args = []string{"fetch", "--depth", "1", "origin", "--", orHead(ref)}
	}
	_, err := g.run(ctx, args...)
	if err == nil {
		return "FETCH_HEAD", nil
	}
	if !commitish.MatchString(ref) {
		return "", err
	}
	// Servers may refuse a commit by id, and git never fetches an abbreviated
	// one: fetch everything and let checkout find it.
	if _, err := g.run(ctx, "fetch", "--tags", "origin"); err != nil {
		return "", err
	}
	return ref, nil
}

// run runs git and returns the tail of its output; the tail of its errors
// ends the error message when it fails.
func (g *gitRunner) run(ctx context.Context, args ...string) (string, error) {
	hardening := []string{
		"-c", "core.hooksPath=/dev/null",
		"-c", "core.fsmonitor=false",
		"-c", "protocol.ext.allow=never",
		"-c", "protocol.file.allow=" + g.fileProtocol,
	}
	cmd := exec.CommandContext(ctx, g.bin, append(hardening, args...)...)
	cmd.Dir = g.dir
	cmd.Env = g.env
	stdout, stderr := &tail{max: 1024}, &tail{max: 1024}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", fmt.Errorf("git %s: %w: %s", args[0], err, stderr)
	}
	return stdout.String(), nil
}

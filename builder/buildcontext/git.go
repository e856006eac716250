package buildcontext

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// GitURL is a git context source split Docker's way:
// "<remote>#<ref>:<subdir>", both parts of the fragment optional.
type GitURL struct {
	Remote string // what git fetches from
	Ref    string // branch, tag or commit; "" for the remote's HEAD
	Subdir string // folder inside the repository used as the context root
}

// ParseGitURL reports whether source names a git repository, as the docker
// CLI decides: git://, git@host:path, ssh://, github.com/..., an http(s) URL
// whose path ends in .git or that has a #fragment, and (for local mirrors and
// tests; Docker has no such form) a file:// URL ending in .git.
func ParseGitURL(source string) (GitURL, bool) {
	remote, fragment, hasFragment := strings.Cut(source, "#")
	if !isGitRemote(remote, hasFragment && fragment != "") {
		return GitURL{}, false
	}
	if strings.HasPrefix(remote, "github.com/") {
		remote = "https://" + remote
	}
	ref, subdir, _ := strings.Cut(fragment, ":")
	return GitURL{Remote: remote, Ref: ref, Subdir: subdir}, true
}

func isGitRemote(remote string, hasFragment bool) bool {
	dotGit := strings.HasSuffix(strings.TrimSuffix(remote, "/"), ".git")
	switch {
	case hasPrefix(remote, "git://", "git@", "ssh://", "github.com/"):
		return true
	case hasPrefix(remote, "http://", "https://"):
		return dotGit || hasFragment
	case hasPrefix(remote, "file://"):
		return dotGit
	}
	return false
}

func hasPrefix(s string, prefixes ...string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// fromGit checks repo out into a new folder, the context root being Subdir.
func fromGit(ctx context.Context, repo GitURL, opts Options) (*Context, error) {
	if strings.HasPrefix(repo.Ref, "-") {
		return nil, fmt.Errorf("git ref %q: must not start with \"-\"", repo.Ref)
	}
	g, err := newGitRunner(opts.Git, repo.Remote)
	if err != nil {
		return nil, err
	}
	c, err := newTemp(opts)
	if err != nil {
		return nil, err
	}
	g.dir = c.root
	if err := g.checkout(ctx, repo); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.enter(repo.Subdir); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// enter makes the folder subdir, resolved inside the checkout, the root.
func (c *Context) enter(subdir string) error {
	real, fi, err := c.resolve(subdir, false)
	if err != nil {
		return fmt.Errorf("git subdir %q: %w", subdir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("git subdir %q: not a folder", subdir)
	}
	c.root = c.host(real)
	return nil
}

// gitRunner runs the system git in one checkout folder, hardened: no
// prompts, no hooks, no templates, no ext:: transport, and the file
// transport only when the user asked for a file:// URL (never for
// submodules, which git runs as not coming from the user).
type gitRunner struct {
	bin, dir, fileProtocol string
	env                    []string
}

func newGitRunner(bin, remote string) (*gitRunner, error) {
	if bin == "" {
		bin = "git"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, fmt.Errorf("git context needs git: %w", err)
	}
	g := &gitRunner{bin: path, fileProtocol: "never"}
	if strings.HasPrefix(remote, "file://") {
		g.fileProtocol = "user"
	}
	g.env = append(gitEnv(os.Environ()), "GIT_TERMINAL_PROMPT=0")
	return g, nil
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

// checkout does what Docker's classic builder does: init, shallow fetch of
// the ref (a full fetch when a commit cannot be fetched by itself), detached
// checkout, recursive submodules. The .git folder is then removed, as
// BuildKit leaves it out of the context.
func (g *gitRunner) checkout(ctx context.Context, repo GitURL) error {
	if _, err := g.run(ctx, "init", "--quiet", "--template="); err != nil {
		return err
	}
	if _, err := g.run(ctx, "remote", "add", "origin", repo.Remote); err != nil {
		return err
	}
	rev, err := g.fetch(ctx, repo.Ref)
	if err != nil {
		return fmt.Errorf("fetching %s: %w", orHead(repo.Ref), err)
	}
	commit, err := g.run(ctx, "rev-parse", "--verify", rev+"^{commit}")
	if err != nil {
		return fmt.Errorf("%s is not a commit of the repository: %w", orHead(repo.Ref), err)
	}
	if _, err := g.run(ctx, "checkout", "--quiet", "--detach", commit); err != nil {
		return fmt.Errorf("checking out %s: %w", orHead(repo.Ref), err)
	}
	if _, err := os.Lstat(filepath.Join(g.dir, ".gitmodules")); err == nil {
		if _, err := g.run(ctx, "submodule", "update", "--init", "--recursive", "--depth", "1"); err != nil {
			return fmt.Errorf("updating submodules: %w", err)
		}
	}
	return os.RemoveAll(filepath.Join(g.dir, ".git"))
}

var commitish = regexp.MustCompile(`^[0-9a-fA-F]{4,64}$`)

// fetch fetches ref and returns what to check out.
func (g *gitRunner) fetch(ctx context.Context, ref string) (string, error) {
	_, err := g.run(ctx, "fetch", "--depth", "1", "origin", "--", orHead(ref))
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

func orHead(ref string) string {
	if ref == "" {
		return "HEAD"
	}
	return ref
}

// tail keeps the last max bytes written to it.
type tail struct {
	max int
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tail) String() string { return strings.TrimSpace(string(t.buf)) }

// redact hides a password in a URL before it goes into an error message.
func redact(source string) string {
	u, err := url.Parse(source)
	if err != nil || u.User == nil {
		return source
	}
	return u.Redacted()
}

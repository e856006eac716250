package buildcontext

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/transport"
)

// GitURL is a git context source. Two readings share it:
//
//   - Docker's: "<remote>#<ref>:<subdir>", both parts of the fragment
//     optional, the remote being any URL git fetches (https://…/repo.git,
//     ssh://, git@host:path, github.com/org/repo).
//   - kaniko's: "git://<host>/<path>#<ref>#<commit>", fetched over HTTPS (or
//     GitOptions.PullMethod), not git's own protocol, which major hosts no
//     longer serve. Ref may be a full name (refs/heads/main, refs/pull/1/head)
//     or a commit; Commit is checked out after Ref is fetched.
//
// A third "#<commit>" and a ":<subdir>" are understood in both readings.
type GitURL struct {
	Remote string // what git fetches from, as written (git:// included)
	Ref    string // branch, tag, full ref name or commit; "" for the remote's HEAD
	Commit string // the commit to check out, from Ref's history; "" for Ref itself
	Subdir string // folder inside the repository used as the context root
}

// kaniko reports whether u is kaniko's reading (a git:// URL).
func (u GitURL) kaniko() bool { return strings.HasPrefix(u.Remote, "git://") }

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
	refAndSubdir, commit, _ := strings.Cut(fragment, "#")
	ref, subdir, _ := strings.Cut(refAndSubdir, ":")
	return GitURL{Remote: remote, Ref: ref, Commit: commit, Subdir: subdir}, true
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

// BuiltinGit, as Options.Git, makes Open fetch git contexts with kiln's
// built-in client (go-git) even where a git binary is installed.
const BuiltinGit = "builtin"

// GitOptions are kaniko's --git settings (branch=, single-branch=,
// recurse-submodules=, insecure-skip-tls=) and its git environment
// (GIT_PULL_METHOD, GIT_USERNAME, GIT_PASSWORD, GIT_TOKEN), as data.
type GitOptions struct {
	// Branch is the branch or tag to build when the URL names no ref.
	Branch string
	// SingleBranch is accepted for kaniko's sake: kiln fetches only the ref
	// it builds anyway (all branches only to find a bare commit).
	SingleBranch bool
	// RecurseSubmodules fetches submodules of a git:// (kaniko) context,
	// which kaniko leaves out by default. Docker's reading always fetches
	// them, as docker build does.
	RecurseSubmodules bool
	// InsecureSkipTLS fetches over HTTPS without verifying the server.
	InsecureSkipTLS bool
	// PullMethod is the scheme a git:// URL is fetched with: "https"
	// (default) or "http".
	PullMethod string
	// Username and Password are sent (HTTP Basic) to the remote's host and
	// to no other, for http(s) remotes. Token, when set, is sent as the
	// username with no password, as kaniko does with GIT_TOKEN.
	Username, Password, Token string
}

// gitFetch is one checkout to make: the URL made concrete by the options.
type gitFetch struct {
	GitURL
	recurse  bool
	insecure bool
	user     string // basic auth for host ("" for none)
	pass     string
	host     string // scheme://host[:port] of Remote, when it is http(s)
}

var commitish = regexp.MustCompile(`^[0-9a-fA-F]{4,64}$`)

// plan checks repo against the options and makes it concrete: a git://
// remote becomes its https:// (or http://) URL.
func (o GitOptions) plan(repo GitURL) (gitFetch, error) {
	f := gitFetch{GitURL: repo, recurse: !repo.kaniko() || o.RecurseSubmodules, insecure: o.InsecureSkipTLS}
	if rest, ok := strings.CutPrefix(repo.Remote, "git://"); ok {
		method := o.PullMethod
		switch method {
		case "":
			method = "https"
		case "http", "https":
		default:
			return f, fmt.Errorf("git pull method %q: want https or http", method)
		}
		f.Remote = method + "://" + rest
	}
	switch {
	case o.Branch == "":
	case f.Ref == "":
		f.Ref = o.Branch
	case f.Ref != o.Branch:
		return f, fmt.Errorf("the URL names ref %q and the git branch option %q: give one", f.Ref, o.Branch)
	}
	if strings.HasPrefix(f.Ref, "-") {
		return f, fmt.Errorf("git ref %q: must not start with \"-\"", f.Ref)
	}
	if f.Commit != "" && !commitish.MatchString(f.Commit) {
		return f, fmt.Errorf("git commit %q: want a commit id (hexadecimal)", f.Commit)
	}
	f.user, f.pass = o.Username, o.Password
	if o.Token != "" {
		f.user, f.pass = o.Token, ""
	}
	if u, err := url.Parse(f.Remote); err == nil && (u.Scheme == "http" || u.Scheme == "https") {
		f.host = u.Scheme + "://" + u.Host
	}
	if f.host == "" {
		f.user, f.pass = "", ""
	}
	return f, nil
}

// sendsAuth says whether remote (the context's or a submodule's) gets the
// credentials: only on the context's own host.
func (f gitFetch) sendsAuth(remote string) bool {
	if f.user == "" && f.pass == "" || f.host == "" {
		return false
	}
	u, err := url.Parse(remote)
	return err == nil && u.Scheme+"://"+u.Host == f.host
}

// basicAuth is the Authorization header value of the credentials.
func (f gitFetch) basicAuth() string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(f.user+":"+f.pass))
}

// gitClient checks a repository out into an empty folder, without its
// .git folders.
type gitClient interface {
	checkout(ctx context.Context, dir string, f gitFetch) error
}

// pickGit chooses the git client: the system git when there is one (what
// docker build runs), kiln's built-in client otherwise (kiln's image has
// no git) or when asked for.
func pickGit(bin string) (gitClient, string, error) {
	if bin == BuiltinGit {
		return builtinGit{}, "built-in (go-git)", nil
	}
	name := bin
	if name == "" {
		name = "git"
	}
	path, err := exec.LookPath(name)
	if err == nil {
		return newGitRunner(path), path, nil
	}
	if bin == "" {
		return builtinGit{}, "built-in (go-git; no git in PATH)", nil
	}
	return nil, "", fmt.Errorf("git context needs git: %w", err)
}

// fromGit checks repo out into a new folder, the context root being Subdir.
func fromGit(ctx context.Context, repo GitURL, opts Options) (*Context, error) {
	f, err := opts.GitOptions.plan(repo)
	if err != nil {
		return nil, err
	}
	client, which, err := pickGit(opts.Git)
	if err != nil {
		return nil, err
	}
	opts.Log.Info("fetching the git context", "remote", redact(f.Remote), "ref", orHead(f.Ref), "commit", f.Commit, "git", which)
	c, err := newTemp(opts)
	if err != nil {
		return nil, err
	}
	if err := client.checkout(ctx, c.root, f); err != nil {
		c.Close()
		return nil, authHint(err)
	}
	if err := c.enter("git subdir", f.Subdir); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// authHint says how to give credentials when either client was refused
// for want of them.
func authHint(err error) error {
	msg := err.Error()
	if errors.Is(err, transport.ErrAuthenticationRequired) || errors.Is(err, transport.ErrAuthorizationFailed) ||
		strings.Contains(msg, "could not read Username") || strings.Contains(msg, "Authentication failed") {
		return fmt.Errorf("%w (the repository wants credentials: set GIT_USERNAME and GIT_PASSWORD, or GIT_TOKEN)", err)
	}
	return err
}

// enter makes the folder sub, resolved inside the context, the root.
func (c *Context) enter(what, sub string) error {
	real, fi, err := c.resolve(sub, false)
	if err != nil {
		return fmt.Errorf("%s %q: %w", what, sub, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s %q: not a folder", what, sub)
	}
	c.root = c.host(real)
	return nil
}

// removeGitDirs removes every .git entry of a checkout: the repository's
// and its submodules' (BuildKit leaves them out of the context; git never
// tracks a file of that name).
func removeGitDirs(dir string) error {
	var found []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Name() == ".git" {
			found = append(found, p)
			if d.IsDir() {
				return fs.SkipDir
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, p := range found {
		if err := os.RemoveAll(p); err != nil {
			return err
		}
	}
	return nil
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

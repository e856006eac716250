package buildcontext

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
)

// builtinGit fetches with go-git, in process: kiln's own image has no git
// binary. It does what gitRunner does (one ref, shallow unless a commit of
// its history is asked for; submodules as asked), and is as strict: no
// hooks exist in go-git, and submodules are fetched only over the network
// (http, https, ssh), never from the build machine's own files.
type builtinGit struct{}

// localRef is where the fetched ref is kept in the checkout's repository.
const localRef = "refs/kiln/context"

// maxSubmoduleDepth bounds nested submodules, as go-git's own default.
const maxSubmoduleDepth = 10

func (builtinGit) checkout(ctx context.Context, dir string, f gitFetch) error {
	r, err := git.PlainInit(dir, false)
	if err != nil {
		return err
	}
	remote, err := r.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{f.Remote}})
	if err != nil {
		return err
	}
	refs, err := remote.ListContext(ctx, &git.ListOptions{Auth: f.auth(f.Remote), InsecureSkipTLS: f.insecure})
	if err != nil {
		return fmt.Errorf("listing the refs of %s: %w", redact(f.Remote), err)
	}
	hash, err := fetchRef(ctx, r, f, refs)
	if err != nil {
		return err
	}
	if f.Commit != "" {
		if hash, err = resolveCommit(r, f.Commit); err != nil {
			return err
		}
	}
	w, err := r.Worktree()
	if err != nil {
		return err
	}
	if err := w.Checkout(&git.CheckoutOptions{Hash: hash, Force: true}); err != nil {
		return fmt.Errorf("checking out %s: %w", what(f), err)
	}
	if f.recurse {
		if err := f.submodules(ctx, w, maxSubmoduleDepth); err != nil {
			return err
		}
	}
	return removeGitDirs(dir)
}

// auth is the credentials for remote: the context's host only.
func (f gitFetch) auth(remote string) transport.AuthMethod {
	if !f.sendsAuth(remote) {
		return nil
	}
	return &githttp.BasicAuth{Username: f.user, Password: f.pass}
}

// fetchRef fetches f.Ref (shallow unless a commit of its history is to be
// checked out) and returns its commit. A ref the remote does not advertise
// may be a commit id: then every branch and tag is fetched to find it.
func fetchRef(ctx context.Context, r *git.Repository, f gitFetch, refs []*plumbing.Reference) (plumbing.Hash, error) {
	name, err := pickRef(refs, f.Ref)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	opts := &git.FetchOptions{RemoteName: "origin", Auth: f.auth(f.Remote), InsecureSkipTLS: f.insecure, Tags: git.NoTags}
	if name == "" {
		opts.RefSpecs = []config.RefSpec{"+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"}
		if err := fetch(ctx, r, opts); err != nil {
			return plumbing.ZeroHash, fmt.Errorf("fetching %s: %w", f.Ref, err)
		}
		return resolveCommit(r, f.Ref)
	}
	opts.RefSpecs = []config.RefSpec{config.RefSpec("+" + name + ":" + localRef)}
	if f.Commit == "" {
		opts.Depth = 1
	}
	if err := fetch(ctx, r, opts); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("fetching %s: %w", name, err)
	}
	ref, err := r.Reference(localRef, true)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("fetching %s: %w", name, err)
	}
	return peel(r, ref.Hash(), name)
}

func fetch(ctx context.Context, r *git.Repository, opts *git.FetchOptions) error {
	err := r.FetchContext(ctx, opts)
	if errors.Is(err, git.NoErrAlreadyUpToDate) {
		return nil
	}
	return err
}

// pickRef finds what to fetch for ref among the remote's refs: HEAD for
// "", a full name as given, else a branch, else a tag of that name; ""
// when ref is none of them but may be a commit id.
func pickRef(refs []*plumbing.Reference, ref string) (string, error) {
	has := map[plumbing.ReferenceName]bool{}
	for _, r := range refs {
		has[r.Name()] = true
	}
	candidates := []plumbing.ReferenceName{plumbing.NewBranchReferenceName(ref), plumbing.NewTagReferenceName(ref)}
	switch {
	case ref == "" || ref == "HEAD":
		candidates = []plumbing.ReferenceName{plumbing.HEAD}
	case len(ref) > 5 && ref[:5] == "refs/":
		candidates = []plumbing.ReferenceName{plumbing.ReferenceName(ref)}
	}
	for _, c := range candidates {
		if has[c] {
			return c.String(), nil
		}
	}
	if commitish.MatchString(ref) {
		return "", nil
	}
	return "", fmt.Errorf("the repository has no branch or tag %q", ref)
}

// peel turns a fetched ref's object (a commit or an annotated tag) into
// its commit.
func peel(r *git.Repository, h plumbing.Hash, name string) (plumbing.Hash, error) {
	for range 10 { // a tag may point at a tag
		tag, err := r.TagObject(h)
		if errors.Is(err, plumbing.ErrObjectNotFound) {
			break
		}
		if err != nil {
			return plumbing.ZeroHash, err
		}
		h = tag.Target
	}
	if _, err := r.CommitObject(h); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("%s is not a commit: %w", name, err)
	}
	return h, nil
}

// resolveCommit finds a commit, full or abbreviated, among what was
// fetched.
func resolveCommit(r *git.Repository, id string) (plumbing.Hash, error) {
	h, err := r.ResolveRevision(plumbing.Revision(id))
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("%s is not a commit of the repository: %w", id, err)
	}
	var c *object.Commit
	if c, err = r.CommitObject(*h); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("%s is not a commit: %w", id, err)
	}
	return c.Hash, nil
}

// submodules checks out the submodules of w at the commits its tree
// records, then theirs, depth levels down. A submodule URL is resolved as
// git does (relative to the remote) and refused unless it is http(s) or ssh.
func (f gitFetch) submodules(ctx context.Context, w *git.Worktree, depth int) error {
	subs, err := w.Submodules()
	if err != nil {
		return fmt.Errorf("reading .gitmodules: %w", err)
	}
	if len(subs) > 0 && depth == 0 {
		return fmt.Errorf("submodules nested more than %d deep", maxSubmoduleDepth)
	}
	for _, s := range subs {
		if err := f.submodule(ctx, s, depth); err != nil {
			return fmt.Errorf("updating submodule %s: %w", s.Config().Path, err)
		}
	}
	return nil
}

func (f gitFetch) submodule(ctx context.Context, s *git.Submodule, depth int) error {
	if err := s.Init(); err != nil && !errors.Is(err, git.ErrSubmoduleAlreadyInitialized) {
		return err
	}
	status, err := s.Status()
	if err != nil {
		return err
	}
	r, err := s.Repository() // checks the path, resolves a relative URL
	if err != nil {
		return err
	}
	remote, err := r.Remote("origin")
	if err != nil {
		return err
	}
	u := remote.Config().URLs[0]
	if !networkRemote(u) {
		return fmt.Errorf("URL %s: not allowed (only http, https and ssh submodules are fetched, never the build machine's own files)", redact(u))
	}
	opts := &git.FetchOptions{RemoteName: "origin", Auth: f.auth(u), InsecureSkipTLS: f.insecure, Tags: git.NoTags, Depth: 1,
		RefSpecs: []config.RefSpec{config.RefSpec("+" + status.Expected.String() + ":" + localRef)}}
	if err := fetch(ctx, r, opts); err != nil {
		// The server does not serve a commit by id: fetch its branches.
		opts.Depth, opts.RefSpecs = 0, []config.RefSpec{"+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"}
		if err := fetch(ctx, r, opts); err != nil {
			return err
		}
	}
	sw, err := r.Worktree()
	if err != nil {
		return err
	}
	if err := sw.Checkout(&git.CheckoutOptions{Hash: status.Expected, Force: true}); err != nil {
		return fmt.Errorf("checking out %s: %w", status.Expected, err)
	}
	return f.submodules(ctx, sw, depth-1)
}

// networkRemote says whether a submodule URL is fetched over the network.
func networkRemote(remote string) bool {
	if u, err := url.Parse(remote); err == nil && u.Host != "" {
		switch u.Scheme {
		case "http", "https", "ssh":
			return true
		}
		return false
	}
	ep, err := transport.NewEndpoint(remote) // scp-like git@host:path
	return err == nil && ep.Protocol == "ssh"
}

package buildcontext

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"kiln/test/harness"
)

const (
	gitUser = "kiln"
	gitPass = "s3cret-git-pass"
)

// servedRepos serves, with Basic auth, three bare repositories: repo.git
// (gitRepo's: v1 on the first commit, dev and main on the second),
// lib.git (one file) and super.git, whose submodule lib is ../lib.git.
// It also serves local.git, whose submodule points at a path on this
// machine.
func servedRepos(t *testing.T) (srv *harness.GitServer, first, second string) {
	t.Helper()
	url, first, second := gitRepo(t)
	root := t.TempDir()
	if err := os.Rename(strings.TrimPrefix(url, "file://"), filepath.Join(root, "repo.git")); err != nil {
		t.Fatal(err)
	}
	lib := t.TempDir()
	git := gitIn(t, lib)
	git("init", "-q")
	writeTree(t, lib, tree{"file": "from the submodule"})
	git("add", "-A")
	git("commit", "-q", "-m", "lib")
	libCommit := git("rev-parse", "HEAD")
	git("clone", "-q", "--bare", lib, filepath.Join(root, "lib.git"))
	for name, subURL := range map[string]string{"super.git": "../lib.git", "local.git": filepath.Join(root, "lib.git")} {
		super := t.TempDir()
		git := gitIn(t, super)
		git("init", "-q")
		writeTree(t, super, tree{"Dockerfile": "FROM scratch\n", ".gitmodules": "[submodule \"lib\"]\n\tpath = lib\n\turl = " + subURL + "\n"})
		git("add", "-A")
		git("update-index", "--add", "--cacheinfo", "160000,"+libCommit+",lib")
		git("commit", "-q", "-m", "with a submodule")
		git("clone", "-q", "--bare", super, filepath.Join(root, name))
	}
	return harness.NewGitServer(t, root, gitUser, gitPass), first, second
}

// gitClients are the two ways kiln fetches: the system git and go-git.
var gitClients = []struct{ name, bin string }{{"system git", ""}, {"built-in", BuiltinGit}}

// TestOpenGitHTTP fetches Docker's and kaniko's git URL forms over HTTP
// with Basic auth, with either client: the same trees, the same errors.
func TestOpenGitHTTP(t *testing.T) {
	srv, first, _ := servedRepos(t)
	host := strings.TrimPrefix(srv.URL, "http://")
	auth := GitOptions{Username: gitUser, Password: gitPass, PullMethod: "http"}
	tests := []struct {
		name    string
		source  string
		opts    GitOptions
		version string   // content of /version
		files   []string // files that must exist
		absent  []string // files that must not
		wantErr string   // "*" for any error
	}{
		{name: "docker: default branch", source: srv.URL + "/repo.git", opts: auth, version: "2"},
		{name: "docker: annotated tag", source: srv.URL + "/repo.git#v1", opts: auth, version: "1"},
		{name: "docker: branch", source: srv.URL + "/repo.git#dev", opts: auth, version: "2"},
		{name: "docker: commit", source: srv.URL + "/repo.git#" + first, opts: auth, version: "1"},
		{name: "docker: short commit", source: srv.URL + "/repo.git#" + first[:10], opts: auth, version: "1"},
		{name: "docker: subdir", source: srv.URL + "/repo.git#v1:sub", opts: auth, files: []string{"a.txt"}, absent: []string{"version"}},
		{name: "docker: submodules always", source: srv.URL + "/super.git", opts: auth, files: []string{"lib/file"}, absent: []string{".git", "lib/.git"}},
		{name: "kaniko: git:// over http", source: "git://" + host + "/repo.git", opts: auth, version: "2"},
		{name: "kaniko: ref then commit", source: "git://" + host + "/repo.git#refs/heads/dev#" + first, opts: auth, version: "1"},
		{name: "kaniko: full tag name", source: "git://" + host + "/repo.git#refs/tags/v1", opts: auth, version: "1"},
		{name: "kaniko: --git branch=", source: "git://" + host + "/repo.git", opts: withBranch(auth, "v1"), version: "1"},
		{name: "kaniko: no submodules unless asked", source: "git://" + host + "/super.git", opts: auth, files: []string{"Dockerfile"}, absent: []string{"lib/file"}},
		{name: "kaniko: recurse-submodules=true", source: "git://" + host + "/super.git", opts: withRecurse(auth), files: []string{"lib/file"}},
		{name: "kaniko: https by default", source: "git://" + host + "/repo.git", opts: GitOptions{Username: gitUser, Password: gitPass}, wantErr: "*"},
		{name: "no credentials", source: srv.URL + "/repo.git", wantErr: "*"},
		{name: "wrong password", source: srv.URL + "/repo.git", opts: GitOptions{Username: gitUser, Password: "nope"}, wantErr: "*"},
		{name: "token is a username", source: srv.URL + "/repo.git", opts: GitOptions{Token: gitPass}, wantErr: "*"},
		{name: "missing ref", source: srv.URL + "/repo.git#nosuch", opts: auth, wantErr: "nosuch"},
		{name: "commit not in the ref's history", source: "git://" + host + "/repo.git#refs/heads/dev#0123456789abcdef0123456789abcdef01234567", opts: auth, wantErr: "0123456789abcdef"},
		{name: "submodule on this machine", source: srv.URL + "/local.git", opts: auth, wantErr: "not allowed"},
		{name: "branch option and ref differ", source: srv.URL + "/repo.git#dev", opts: withBranch(auth, "v1"), wantErr: "give one"},
	}
	for _, client := range gitClients {
		for _, tt := range tests {
			t.Run(client.name+"/"+tt.name, func(t *testing.T) {
				tmp := t.TempDir()
				c, err := Open(context.Background(), tt.source, Options{TempDir: tmp, Git: client.bin, GitOptions: tt.opts})
				if tt.wantErr != "" {
					if err == nil || tt.wantErr != "*" && !strings.Contains(err.Error(), tt.wantErr) {
						t.Fatalf("Open: %v, want an error containing %q", err, tt.wantErr)
					}
					t.Logf("Open: %v", err)
					if strings.Contains(err.Error(), gitPass) {
						t.Errorf("the error shows the password: %v", err)
					}
					assertEmpty(t, tmp)
					return
				}
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				defer c.Close()
				if tt.version != "" {
					if got, _ := os.ReadFile(filepath.Join(c.Root(), "version")); string(got) != tt.version {
						t.Errorf("version = %q, want %q", got, tt.version)
					}
				}
				for _, f := range tt.files {
					if _, err := os.Lstat(filepath.Join(c.Root(), f)); err != nil {
						t.Errorf("%s: %v", f, err)
					}
				}
				for _, f := range append(tt.absent, ".git") {
					if _, err := os.Lstat(filepath.Join(c.Root(), f)); err == nil {
						t.Errorf("%s is in the context", f)
					}
				}
			})
		}
	}
}

func withBranch(o GitOptions, b string) GitOptions { o.Branch = b; return o }
func withRecurse(o GitOptions) GitOptions          { o.RecurseSubmodules = true; return o }

// TestGitCredentialsStayOnTheirHost: credentials go to the context's host
// only, never to a submodule's elsewhere.
func TestGitCredentialsStayOnTheirHost(t *testing.T) {
	f, err := GitOptions{Username: "u", Password: "p"}.plan(GitURL{Remote: "https://git.example.com:8443/acme/api.git"})
	if err != nil {
		t.Fatal(err)
	}
	for remote, want := range map[string]bool{
		"https://git.example.com:8443/acme/lib.git": true,
		"https://git.example.com/acme/lib.git":      false,
		"http://git.example.com:8443/acme/lib.git":  false,
		"https://evil.example.com/x.git":            false,
		"git@git.example.com:acme/lib.git":          false,
	} {
		if got := f.sendsAuth(remote); got != want {
			t.Errorf("sendsAuth(%s) = %v, want %v", remote, got, want)
		}
	}
}

func TestGitOptionsPlan(t *testing.T) {
	tests := []struct {
		name       string
		url        GitURL
		opts       GitOptions
		wantRemote string
		wantRef    string
		wantUser   string
		wantPass   string
		recurse    bool
		wantErr    string
	}{
		{name: "kaniko git:// is https", url: GitURL{Remote: "git://github.com/acme/api"}, wantRemote: "https://github.com/acme/api"},
		{name: "GIT_PULL_METHOD=http", url: GitURL{Remote: "git://h/r"}, opts: GitOptions{PullMethod: "http"}, wantRemote: "http://h/r"},
		{name: "bad pull method", url: GitURL{Remote: "git://h/r"}, opts: GitOptions{PullMethod: "ftp"}, wantErr: "pull method"},
		{name: "docker https keeps submodules", url: GitURL{Remote: "https://h/r.git"}, wantRemote: "https://h/r.git", recurse: true},
		{name: "kaniko asks for submodules", url: GitURL{Remote: "git://h/r"}, opts: GitOptions{RecurseSubmodules: true}, wantRemote: "https://h/r", recurse: true},
		{name: "branch option fills the ref", url: GitURL{Remote: "git://h/r"}, opts: GitOptions{Branch: "dev"}, wantRemote: "https://h/r", wantRef: "dev"},
		{name: "branch option equal to the ref", url: GitURL{Remote: "git://h/r", Ref: "dev"}, opts: GitOptions{Branch: "dev"}, wantRemote: "https://h/r", wantRef: "dev"},
		{name: "token as the username", url: GitURL{Remote: "https://h/r.git"}, opts: GitOptions{Username: "u", Password: "p", Token: "t"}, wantRemote: "https://h/r.git", wantUser: "t", recurse: true},
		{name: "no credentials over ssh", url: GitURL{Remote: "ssh://git@h/r.git"}, opts: GitOptions{Username: "u", Password: "p"}, wantRemote: "ssh://git@h/r.git", recurse: true},
		{name: "ref like a flag", url: GitURL{Remote: "git://h/r", Ref: "--upload-pack=x"}, wantErr: "must not start"},
		{name: "commit that is no commit", url: GitURL{Remote: "git://h/r", Commit: "main"}, wantErr: "commit id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := tt.opts.plan(tt.url)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("plan: %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if f.Remote != tt.wantRemote || f.Ref != tt.wantRef || f.user != tt.wantUser || f.pass != tt.wantPass || f.recurse != tt.recurse {
				t.Errorf("plan = remote %q ref %q user %q pass %q recurse %v; want %q %q %q %q %v",
					f.Remote, f.Ref, f.user, f.pass, f.recurse, tt.wantRemote, tt.wantRef, tt.wantUser, tt.wantPass, tt.recurse)
			}
		})
	}
}

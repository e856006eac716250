package buildcontext

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseGitURL(t *testing.T) {
	tests := []struct {
		source string
		want   GitURL
		isGit  bool
	}{
		{"git://host/repo", GitURL{Remote: "git://host/repo"}, true},
		{"git://host/repo.git#main", GitURL{Remote: "git://host/repo.git", Ref: "main"}, true},
		{"git@github.com:acme/api.git", GitURL{Remote: "git@github.com:acme/api.git"}, true},
		{"git@github.com:acme/api#v1:svc/x", GitURL{Remote: "git@github.com:acme/api", Ref: "v1", Subdir: "svc/x"}, true},
		{"ssh://git@host:22/acme/api.git#dev", GitURL{Remote: "ssh://git@host:22/acme/api.git", Ref: "dev"}, true},
		{"https://github.com/acme/api.git", GitURL{Remote: "https://github.com/acme/api.git"}, true},
		{"https://github.com/acme/api.git#:sub", GitURL{Remote: "https://github.com/acme/api.git", Subdir: "sub"}, true},
		{"https://example.com/acme/api#main:dir", GitURL{Remote: "https://example.com/acme/api", Ref: "main", Subdir: "dir"}, true},
		{"http://example.com/acme/api.git/", GitURL{Remote: "http://example.com/acme/api.git/"}, true},
		{"github.com/acme/api", GitURL{Remote: "https://github.com/acme/api"}, true},
		{"file:///srv/repos/api.git#v1:sub", GitURL{Remote: "file:///srv/repos/api.git", Ref: "v1", Subdir: "sub"}, true},
		{"git://github.com/acme/api#refs/heads/main#0123abcd", GitURL{Remote: "git://github.com/acme/api", Ref: "refs/heads/main", Commit: "0123abcd"}, true},
		{"git://github.com/acme/api#refs/pull/7/head", GitURL{Remote: "git://github.com/acme/api", Ref: "refs/pull/7/head"}, true},
		{"git://github.com/acme/api#0123abcd", GitURL{Remote: "git://github.com/acme/api", Ref: "0123abcd"}, true},
		{"git://github.com/acme/api#v1:svc#0123abcd", GitURL{Remote: "git://github.com/acme/api", Ref: "v1", Subdir: "svc", Commit: "0123abcd"}, true},
		{"https://github.com/acme/api.git#main:svc", GitURL{Remote: "https://github.com/acme/api.git", Ref: "main", Subdir: "svc"}, true},
		{"https://example.com/context.tar.gz", GitURL{}, false},
		{"https://example.com/repo#", GitURL{}, false},
		{"file:///srv/repos/api", GitURL{}, false},
		{"./repo.git", GitURL{}, false},
		{"/srv/repo.git", GitURL{}, false},
		{"-", GitURL{}, false},
	}
	for _, tt := range tests {
		got, ok := ParseGitURL(tt.source)
		if ok != tt.isGit || got != tt.want {
			t.Errorf("ParseGitURL(%q) = %+v, %v; want %+v, %v", tt.source, got, ok, tt.want, tt.isGit)
		}
	}
}

// gitRepo makes a bare repository with two commits, tag v1 on the first and
// branch dev on the second, and returns its file:// URL and both commits.
func gitRepo(t *testing.T) (url, first, second string) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	work := t.TempDir()
	git := gitIn(t, work)
	git("init", "-q")
	writeTree(t, work, tree{"Dockerfile": "FROM scratch\n", "version": "1", "sub/Dockerfile": "FROM sub\n", "sub/a.txt": "a", "sub/up": "-> /../../version"})
	git("add", "-A")
	git("commit", "-q", "-m", "one")
	git("tag", "-a", "v1", "-m", "v1")
	first = git("rev-parse", "HEAD")
	writeTree(t, work, tree{"version": "2"})
	git("commit", "-q", "-am", "two")
	git("branch", "dev")
	second = git("rev-parse", "HEAD")
	bare := filepath.Join(t.TempDir(), "repo.git")
	git("clone", "-q", "--bare", work, bare)
	return "file://" + bare, first, second
}

// gitIn runs git in dir for test set-up, away from the user's configuration.
func gitIn(t *testing.T, dir string) func(args ...string) string {
	return func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-c", "user.name=kiln", "-c", "user.email=kiln@example.com", "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false", "-c", "init.defaultBranch=main", "-c", "protocol.file.allow=always"}, args...)...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
}

func TestOpenGit(t *testing.T) {
	url, first, _ := gitRepo(t)
	tests := []struct {
		name, fragment string
		version        string   // content of /version, "" if absent
		want           []string // Walk(".")
		wantErr        string   // in the error message
	}{
		{name: "default branch", version: "2", want: []string{"Dockerfile", "sub/", "sub/Dockerfile", "sub/a.txt", "sub/up -> /../../version", "version"}},
		{name: "annotated tag", fragment: "#v1", version: "1"},
		{name: "branch", fragment: "#dev", version: "2"},
		{name: "full commit", fragment: "#" + first, version: "1"},
		{name: "short commit, full fetch", fragment: "#" + first[:10], version: "1"},
		{name: "subdir", fragment: "#v1:sub", want: []string{"Dockerfile", "a.txt", "up -> /../../version"}},
		{name: "subdir on the default branch", fragment: "#:sub", want: []string{"Dockerfile", "a.txt", "up -> /../../version"}},
		{name: "subdir cannot climb out", fragment: "#v1:../../..", version: "1"},
		{name: "bad ref", fragment: "#nosuch", wantErr: "nosuch"},
		{name: "bad commit", fragment: "#deadbeef", wantErr: "deadbeef"},
		{name: "ref that looks like a flag", fragment: "#--upload-pack=touch", wantErr: "must not start"},
		{name: "missing subdir", fragment: "#v1:nope", wantErr: "nope"},
		{name: "subdir is a file", fragment: "#v1:version", wantErr: "not a folder"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmp := t.TempDir()
			c, err := Open(context.Background(), url+tt.fragment, Options{TempDir: tmp})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Open: %v, want an error containing %q", err, tt.wantErr)
				}
				assertEmpty(t, tmp)
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer c.Close()
			if got, _ := os.ReadFile(filepath.Join(c.Root(), "version")); string(got) != tt.version {
				t.Errorf("version = %q, want %q", got, tt.version)
			}
			if tt.want != nil {
				if got := walkAll(t, c, "."); !slices.Equal(got, tt.want) {
					t.Errorf("Walk = %q, want %q", got, tt.want)
				}
			}
			if _, err := c.Dockerfile(); err != nil {
				t.Errorf("Dockerfile(): %v", err)
			}
			if c.Close(); !isEmptyDir(tmp) {
				t.Errorf("Close left files in %s", tmp)
			}
		})
	}
}

func TestOpenGitSubdirSymlinkStaysInside(t *testing.T) {
	url, _, _ := gitRepo(t)
	c, err := Open(context.Background(), url+"#v1:sub", Options{TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// sub/up points at the repository's /version, outside the subdir context.
	if _, err := c.Resolve("up"); !errorIs(err, os.ErrNotExist) {
		t.Errorf("Resolve(up) = %v, want not found: the subdir is the root", err)
	}
}

// A submodule may not use the file transport: a hostile repository could
// otherwise pull any repository on the build machine into the context.
func TestOpenGitRefusesLocalSubmodules(t *testing.T) {
	url, _, _ := gitRepo(t)
	super := t.TempDir()
	git := gitIn(t, super)
	git("init", "-q")
	writeTree(t, super, tree{"Dockerfile": "FROM scratch\n"})
	git("submodule", "add", "-q", url, "mod")
	git("commit", "-q", "-am", "with a submodule")
	bare := filepath.Join(t.TempDir(), "super.git")
	git("clone", "-q", "--bare", super, bare)

	tmp := t.TempDir()
	_, err := Open(context.Background(), "file://"+bare, Options{TempDir: tmp})
	if err == nil || !strings.Contains(err.Error(), "submodules") || !strings.Contains(err.Error(), "not allowed") {
		t.Fatalf("Open: %v, want git refusing the file transport for the submodule", err)
	}
	assertEmpty(t, tmp)
}

func TestGitEnvDropsRepositoryVariables(t *testing.T) {
	got := gitEnv([]string{"HOME=/root", "GIT_DIR=/elsewhere/.git", "GIT_WORK_TREE=/elsewhere", "GIT_SSH_COMMAND=ssh -i k", "PATH=/bin"})
	want := []string{"HOME=/root", "GIT_SSH_COMMAND=ssh -i k", "PATH=/bin"}
	if !slices.Equal(got, want) {
		t.Errorf("gitEnv = %q, want %q", got, want)
	}
}

func TestOpenGitMissingBinary(t *testing.T) {
	_, err := Open(context.Background(), "https://example.com/r.git", Options{TempDir: t.TempDir(), Git: filepath.Join(t.TempDir(), "no-git")})
	if err == nil || !strings.Contains(err.Error(), "git") {
		t.Errorf("Open without git: %v", err)
	}
}

func TestRedact(t *testing.T) {
	if got := redact("https://user:s3cret@example.com/r.git"); strings.Contains(got, "s3cret") {
		t.Errorf("redact kept the password: %s", got)
	}
	_, err := Open(context.Background(), "https://user:s3cret@127.0.0.1:1/r.git", Options{TempDir: t.TempDir(), Git: "no-such-git-binary"})
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error leaks the password or is missing: %v", err)
	}
}

func isEmptyDir(dir string) bool {
	entries, err := os.ReadDir(dir)
	return err == nil && len(entries) == 0
}

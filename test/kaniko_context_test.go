package test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"kiln/test/harness"
)

// TestKanikoContextsAndDockerfilePaths: a kaniko command line works
// unchanged: dir:// and tar:// contexts, --context-sub-path, and
// --dockerfile absolute, from the working directory (with its
// .dockerignore beside it) or inside the context, run as kiln build or as
// kaniko's executor.
func TestKanikoContextsAndDockerfilePaths(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	ctxDir := filepath.Join(base, "ctx")
	writeContext(t, ctxDir, map[string]string{
		"Dockerfile": "FROM scratch\nCOPY . /app/\n", "a.txt": "a", "secret.txt": "s", ".dockerignore": "secret.txt\n",
		"svc/Dockerfile": "FROM scratch\nCOPY . /svc/\n", "svc/b.txt": "b",
	})
	writeContext(t, base, map[string]string{
		"df/Dockerfile": "FROM scratch\nCOPY . /outside/\n", "df/Dockerfile.dockerignore": "a.txt\n",
	})
	tarball := filepath.Join(base, "ctx.tar.gz")
	tarDir(t, ctxDir, tarball)
	executor := filepath.Join(t.TempDir(), "executor") // kaniko's entry point, as kiln's image has it
	if err := os.Symlink(kilnBin, executor); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		bin      string // "" for kiln
		args     []string
		dir      string
		want     []string // paths in the image
		absent   []string
		wantCode int
		wantErr  string
	}{
		{name: "dir://", args: []string{"build", "--context", "dir://" + ctxDir}, want: []string{"/app/a.txt", "/app/svc/b.txt"}, absent: []string{"/app/secret.txt"}},
		{name: "tar://", args: []string{"build", "--context", "tar://" + tarball}, want: []string{"/app/a.txt"}, absent: []string{"/app/secret.txt"}},
		{name: "sub-path", args: []string{"build", "--context", "dir://" + ctxDir, "--context-sub-path", "svc"}, want: []string{"/svc/b.txt"}, absent: []string{"/svc/svc", "/app"}},
		{name: "dockerfile in the context", args: []string{"build", "--context", ctxDir, "--dockerfile", "svc/Dockerfile"}, want: []string{"/svc/a.txt", "/svc/svc/b.txt"}},
		{name: "dockerfile from the working directory, outside the context", dir: base, args: []string{"build", "--context", "ctx", "--dockerfile", "df/Dockerfile"},
			want: []string{"/outside/secret.txt", "/outside/svc/b.txt"}, absent: []string{"/outside/a.txt"}},
		{name: "dockerfile absolute", args: []string{"build", "--context", ctxDir, "--dockerfile", filepath.Join(base, "df", "Dockerfile")}, want: []string{"/outside/svc/b.txt"}, absent: []string{"/outside/a.txt"}},
		{name: "dockerfile nowhere", args: []string{"build", "--context", ctxDir, "--dockerfile", "nope/Dockerfile"}, wantCode: 2, wantErr: "nor in the context"},
		{name: "s3 refused", args: []string{"build", "--context", "s3://bucket/ctx.tar.gz"}, wantCode: 2, wantErr: "tar://"},
		{name: "as executor", bin: executor, args: []string{"-c", "dir://" + ctxDir, "--dockerfile=svc/Dockerfile"}, want: []string{"/svc/a.txt"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			args := append(tt.args, "--no-push", "--output", "oci:"+out, "--cache-dir", t.TempDir(), "--work-dir", t.TempDir())
			var r result
			if tt.bin != "" {
				r = runAs(t, tt.bin, tt.dir, args...)
			} else {
				r = runKilnOpts(t, runOpts{dir: tt.dir}, args...)
			}
			mustExit(t, r, tt.wantCode)
			if tt.wantErr != "" {
				if !strings.Contains(r.stderr, tt.wantErr) {
					t.Errorf("stderr should say %q:\n%s", tt.wantErr, r)
				}
				return
			}
			tree, _ := flatten(t, layoutImage(t, out, "image"))
			files := byPath(tree)
			for _, p := range tt.want {
				if _, ok := files[p]; !ok {
					t.Errorf("%s missing from the image", p)
				}
			}
			for _, p := range tt.absent {
				if _, ok := files[p]; ok {
					t.Errorf("%s is in the image", p)
				}
			}
		})
	}
}

// runAs runs kiln through another name (a link), hermetically as runKilnOpts.
func runAs(t *testing.T, bin, dir string, args ...string) result {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	cmd := exec.CommandContext(t.Context(), bin, args...)
	cmd.Dir, cmd.Env = dir, baseEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return result{args: args, code: exitCode(err), stdout: stdout.String(), stderr: stderr.String()}
}

// tarDir writes dir as a gzipped tar to file.
func tarDir(t *testing.T, dir, file string) {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	if err := tw.AddFS(os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

const (
	gitUser = "ci-bot"
	gitPass = "git-Passw0rd"
)

// gitRepos makes, under a new folder served by a git HTTP server with Basic
// auth, app.git (a Dockerfile copying its tree, a file, a svc folder, and a
// submodule lib at ../lib.git, then the files of extra; a file named
// busybox is executable) and lib.git.
func gitRepos(t *testing.T, extra map[string]string) *harness.GitServer {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed (the test's server needs it)")
	}
	root := t.TempDir()
	lib := t.TempDir()
	git := gitIn(t, lib)
	git("init", "-q")
	writeContext(t, lib, map[string]string{"lib.txt": "from the submodule"})
	git("add", "-A")
	git("commit", "-q", "-m", "lib")
	libCommit := git("rev-parse", "HEAD")
	git("clone", "-q", "--bare", lib, filepath.Join(root, "lib.git"))

	app := t.TempDir()
	git = gitIn(t, app)
	git("init", "-q")
	files := map[string]string{
		"Dockerfile": "FROM scratch\nCOPY . /src/\n", "version": "1", "svc/Dockerfile": "FROM scratch\nCOPY . /svc/\n", "svc/s.txt": "s",
		".gitmodules": "[submodule \"lib\"]\n\tpath = lib\n\turl = ../lib.git\n",
	}
	maps.Copy(files, extra)
	writeContext(t, app, files)
	if _, ok := extra["busybox"]; ok {
		if err := os.Chmod(filepath.Join(app, "busybox"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	git("add", "-A")
	git("update-index", "--add", "--cacheinfo", "160000,"+libCommit+",lib")
	git("commit", "-q", "-m", "app")
	git("clone", "-q", "--bare", app, filepath.Join(root, "app.git"))
	return harness.NewGitServer(t, root, gitUser, gitPass)
}

// gitIn runs git in dir for test set-up, away from the user's configuration.
func gitIn(t *testing.T, dir string) func(args ...string) string {
	return func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-c", "user.name=kiln", "-c", "user.email=kiln@example.com", "-c", "commit.gpgsign=false",
			"-c", "init.defaultBranch=main", "-c", "protocol.file.allow=always"}, args...)...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
}

// TestBuildGitContextWithoutGit: kaniko's git:// context, its credentials
// and --git settings, fetched by kiln's built-in client where no git binary
// is installed (as in kiln's image), gives the image the system git gives.
func TestBuildGitContextWithoutGit(t *testing.T) {
	t.Parallel()
	srv := gitRepos(t, nil)
	host := strings.TrimPrefix(srv.URL, "http://")
	noGit := t.TempDir() // an empty PATH: no git to run
	creds := []string{"GIT_PULL_METHOD=http", "GIT_USERNAME=" + gitUser, "GIT_PASSWORD=" + gitPass}
	tests := []struct {
		name    string
		args    []string
		env     []string
		want    []string
		absent  []string
		wantErr string
	}{
		{name: "kaniko form with submodules", args: []string{"--context", "git://" + host + "/app.git#refs/heads/main", "--git", "recurse-submodules=true"}, env: creds,
			want: []string{"/src/version", "/src/lib/lib.txt", "/src/svc/s.txt"}, absent: []string{"/src/.git", "/src/lib/.git"}},
		{name: "kaniko form, sub-path, branch", args: []string{"--context", "git://" + host + "/app.git", "--git", "branch=main,single-branch=true", "--context-sub-path", "svc"}, env: creds,
			want: []string{"/svc/s.txt"}, absent: []string{"/svc/version"}},
		{name: "docker form", args: []string{"--context", srv.URL + "/app.git#main:svc"}, env: creds[1:], want: []string{"/svc/s.txt"}},
		{name: "no credentials", args: []string{"--context", "git://" + host + "/app.git"}, env: creds[:1], wantErr: "GIT_USERNAME"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var digests []string
			for _, path := range []string{noGit, os.Getenv("PATH")} {
				out := filepath.Join(t.TempDir(), "out")
				digest := filepath.Join(t.TempDir(), "digest")
				args := append([]string{"build", "--progress", "plain", "--reproducible", "--no-push", "--output", "oci:" + out, "--digest-file", digest,
					"--cache-dir", t.TempDir(), "--work-dir", t.TempDir()}, tt.args...)
				r := runKilnOpts(t, runOpts{env: append([]string{"PATH=" + path}, tt.env...)}, args...)
				if strings.Contains(r.output(), gitPass) {
					t.Errorf("the output shows the git password:\n%s", r)
				}
				if tt.wantErr != "" {
					mustExit(t, r, 1)
					if !strings.Contains(r.stderr, tt.wantErr) {
						t.Errorf("stderr should say %q:\n%s", tt.wantErr, r)
					}
					continue
				}
				mustExit(t, r, 0)
				if path == noGit && !strings.Contains(r.output(), "git=\"built-in (go-git; no git in PATH)\"") {
					t.Errorf("without git in PATH, kiln should say it uses its built-in client:\n%s", r)
				}
				tree, _ := flatten(t, layoutImage(t, out, "image"))
				files := byPath(tree)
				for _, p := range tt.want {
					if _, ok := files[p]; !ok {
						t.Errorf("%s missing from the image", p)
					}
				}
				for _, p := range tt.absent {
					if _, ok := files[p]; ok {
						t.Errorf("%s is in the image", p)
					}
				}
				b, _ := os.ReadFile(digest)
				digests = append(digests, strings.TrimSpace(string(b)))
			}
			if len(digests) == 2 && digests[0] != digests[1] {
				t.Errorf("the built-in client and git gave different images: %s, %s", digests[0], digests[1])
			}
		})
	}
}

package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"kiln/builder/buildcontext"
)

func TestKanikoArgs(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want []string
	}{
		{name: "kiln", in: []string{"/kiln/kiln", "build", "-c", "build.toml", "api"}, want: []string{"/kiln/kiln", "build", "-c", "build.toml", "api"}},
		{name: "kiln help", in: []string{"kiln", "--help"}, want: []string{"kiln", "--help"}},
		{name: "kiln alone", in: []string{"kiln"}, want: []string{"kiln"}},
		{name: "executor", in: []string{"/kaniko/executor", "--context=dir:///workspace", "-d", "reg/app:1"},
			want: []string{"kiln", "build", "--context", "/workspace/", "--context=dir:///workspace", "-d", "reg/app:1"}},
		{name: "executor -c", in: []string{"/kaniko/executor", "-c", "/src", "-c=/other", "--", "-c"},
			want: []string{"kiln", "build", "--context", "/workspace/", "--context", "/src", "--context=/other", "--", "-c"}},
		{name: "executor version", in: []string{"/kaniko/executor", "version"}, want: []string{"kiln", "version"}},
		{name: "image entrypoint with kaniko's args", in: []string{"/kiln/kiln", "--dockerfile=Dockerfile", "--destination=reg/app"},
			want: []string{"kiln", "build", "--context", "/workspace/", "--dockerfile=Dockerfile", "--destination=reg/app"}},
		{name: "kiln with an unknown flag", in: []string{"kiln", "--no-such-flag"}, want: []string{"kiln", "--no-such-flag"}},
		{name: "kiln -v", in: []string{"kiln", "-v"}, want: []string{"kiln", "-v"}},
		{name: "warmer", in: []string{"/kaniko/warmer", "--cache-dir=/cache", "--image=alpine"}, want: []string{"kiln", "warm", "--cache-dir=/cache", "--image=alpine"}},
	}
	for _, tt := range tests {
		if got := kanikoArgs(tt.in, buildFlags()); !slices.Equal(got, tt.want) {
			t.Errorf("%s: kanikoArgs(%q) = %q, want %q", tt.name, tt.in, got, tt.want)
		}
	}
}

func TestGitOptions(t *testing.T) {
	env := map[string]string{"GIT_USERNAME": "u", "GIT_PASSWORD": "p", "GIT_TOKEN": "t", "GIT_PULL_METHOD": "http"}
	tests := []struct {
		name    string
		values  []string
		env     map[string]string
		want    buildcontext.GitOptions
		wantErr string
	}{
		{name: "none", want: buildcontext.GitOptions{}},
		{name: "environment", env: env, want: buildcontext.GitOptions{Username: "u", Password: "p", Token: "t", PullMethod: "http"}},
		{name: "unknown pull method falls back", env: map[string]string{"GIT_PULL_METHOD": "ssh"}, want: buildcontext.GitOptions{}},
		{name: "one flag, commas", values: []string{"branch=release,1,single-branch=true,recurse-submodules=true,insecure-skip-tls=false"},
			want: buildcontext.GitOptions{Branch: "release,1", SingleBranch: true, RecurseSubmodules: true}},
		{name: "repeated", values: []string{"branch=main", "insecure-skip-tls=true"}, want: buildcontext.GitOptions{Branch: "main", InsecureSkipTLS: true}},
		{name: "not key=value", values: []string{"main"}, wantErr: "KEY=VALUE"},
		{name: "not a bool", values: []string{"single-branch=yes please"}, wantErr: "true or false"},
		{name: "unknown key", values: []string{"depth=1"}, wantErr: "unknown"},
	}
	for _, tt := range tests {
		got, err := gitOptions(tt.values, func(k string) string { return tt.env[k] })
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: err = %v, want %q", tt.name, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%s: gitOptions = %+v, %v; want %+v", tt.name, got, err, tt.want)
		}
	}
}

// TestResolveDockerfile: kaniko's order — absolute, else from the working
// directory, else inside the context.
func TestResolveDockerfile(t *testing.T) {
	wd := t.TempDir()
	t.Chdir(wd)
	ctx := filepath.Join(wd, "ctx")
	for _, p := range []string{"ctx/Dockerfile", "ctx/build/Dockerfile", "Dockerfile.cwd", "ctx/Dockerfile.cwd"} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name, in, root, want, wantErr string
	}{
		{name: "absolute", in: "/elsewhere/Dockerfile", root: ctx, want: "/elsewhere/Dockerfile"},
		{name: "working directory first", in: "Dockerfile.cwd", root: ctx, want: filepath.Join(wd, "Dockerfile.cwd")},
		{name: "then the context", in: "build/Dockerfile", root: ctx, want: "build/Dockerfile"},
		{name: "a folder in the working directory is no Dockerfile", in: "ctx", root: ctx, wantErr: "nor in the context"},
		{name: "nowhere", in: "nope", root: ctx, wantErr: "nor in the context"},
		{name: "not a local context: the build looks", in: "nope", root: "", want: "nope"},
		{name: "a URL", in: "https://example.com/Dockerfile", wantErr: "from a file"},
	}
	for _, tt := range tests {
		got, err := resolveDockerfile(tt.in, tt.root)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: err = %v, want %q", tt.name, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%s: resolveDockerfile(%q) = %q, %v; want %q", tt.name, tt.in, got, err, tt.want)
		}
	}
}

func TestDockerConfigDir(t *testing.T) {
	kaniko := t.TempDir()
	empty := t.TempDir()
	if err := os.WriteFile(filepath.Join(kaniko, "config.json"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	set := func(k string) string { return map[string]string{"DOCKER_CONFIG": "/mine"}[k] }
	unset := func(string) string { return "" }
	for _, tt := range []struct {
		name   string
		getenv func(string) string
		dir    string
		want   string
	}{
		{"DOCKER_CONFIG wins", set, kaniko, ""},
		{"kaniko's when present", unset, kaniko, kaniko},
		{"the default otherwise", unset, empty, ""},
	} {
		if got := dockerConfigDir(tt.getenv, tt.dir); got != tt.want {
			t.Errorf("%s: dockerConfigDir = %q, want %q", tt.name, got, tt.want)
		}
	}
}

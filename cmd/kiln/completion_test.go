package main

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestComplete(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"build.toml": `[images.api]
context = "."
platforms = ["linux/arm/v7", "linux/amd64"]
tags = ["registry.example.com/acme/api:1"]

[images.web]
context = "."
platforms = ["linux/amd64"]
tags = ["registry.example.com/acme/web:1"]
`})
	cfg := filepath.Join(dir, "build.toml")
	tests := []struct {
		words []string
		want  []string
	}{
		{words: []string{"bu"}, want: []string{"build", "build-all"}},
		{words: []string{""}, want: []string{"warm", "build", "build-all", "index", "push", "render", "version", "completion", "help"}},
		{words: []string{"__c"}, want: nil},
		{words: []string{"build", "--pla"}, want: []string{"--platform"}},
		{words: []string{"build", "--cache-r"}, want: []string{"--cache-repo", "--cache-run-layers"}},
		{words: []string{"build", "--platform", "linux/arm"}, want: []string{"linux/arm64", "linux/arm/v7", "linux/arm/v6"}},
		{words: []string{"build", "--platform", "=", "linux/s"}, want: []string{"linux/s390x"}},
		{words: []string{"build", "--platform", "="}, want: commonPlatforms},
		{words: []string{"build", "--platform=linux/s"}, want: []string{"--platform=linux/s390x"}},
		{words: []string{"build", "--config", cfg, "--platform", "linux/a"}, want: []string{"linux/arm/v7", "linux/amd64", "linux/arm64", "linux/arm/v6"}},
		{words: []string{"build", "--config", cfg, ""}, want: []string{"api", "web"}},
		{words: []string{"build", "--config=" + cfg, "--no-push", "a"}, want: []string{"api"}},
		{words: []string{"build-all", "--config", cfg, "api", "--jobs", "2", "w"}, want: []string{"web"}},
		{words: []string{"build", "--config", filepath.Join(dir, "missing.toml"), ""}, want: nil},
		{words: []string{"build", "--context", "x"}, want: []string{filesAnswer}},
		{words: []string{"build", "--dockerfile=D"}, want: []string{filesAnswer}},
		{words: []string{"build", "-v", "d"}, want: []string{"debug"}},
		{words: []string{"warm", "--verbosity", ""}, want: []string{"trace", "debug", "info", "warn", "error", "fatal", "panic"}},
		{words: []string{"build", "--isolation", "r"}, want: []string{"rootless"}},
		{words: []string{"build", "--destination", "r"}, want: nil},
		{words: []string{"render", "--config", cfg, "c"}, want: []string{"cronjob"}},
		{words: []string{"index", "c"}, want: []string{"create"}},
		{words: []string{"index", "create", "--ta"}, want: []string{"--tag"}},
		{words: []string{"completion", "z"}, want: []string{"zsh"}},
		{words: []string{"nosuch", "x"}, want: nil},
	}
	app := newApp()
	app.Setup()
	for _, tt := range tests {
		t.Run(strings.Join(tt.words, " "), func(t *testing.T) {
			if got := complete(app, tt.words); !slices.Equal(got, tt.want) {
				t.Errorf("complete(%q) = %q, want %q", tt.words, got, tt.want)
			}
		})
	}
}

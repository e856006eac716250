package main

import (
	"slices"
	"strings"
	"testing"
)

func TestReorderArgs(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{name: "flag after NAME", in: "build api --platform linux/arm64", want: "build --platform linux/arm64 api"},
		{name: "flag=value after NAME", in: "build api --platform=linux/arm64", want: "build --platform=linux/arm64 api"},
		{name: "short flags around NAME", in: "build -f Dockerfile.x api -d reg/x:1", want: "build -f Dockerfile.x -d reg/x:1 api"},
		{name: "bool flags take no value", in: "build api --no-push --reproducible other", want: "build --no-push --reproducible api other"},
		{name: "bool=false", in: "build api --cache=false", want: "build --cache=false api"},
		{name: "a value that looks like a flag", in: "build api --pids-limit -1", want: "build --pids-limit -1 api"},
		{name: "stdin context", in: "build api --context -", want: "build --context - api"},
		{name: "dash positional", in: "build - --no-push", want: "build --no-push -"},
		{name: "names then jobs", in: "build-all api web --jobs 2", want: "build-all --jobs 2 api web"},
		{name: "already in order", in: "warm --image x --refresh", want: "warm --image x --refresh"},
		{name: "double dash ends the flags", in: "build api -- --not-a-flag", want: "build -- api --not-a-flag"},
		{name: "flags then double dash", in: "build --no-push -- api", want: "build --no-push -- api"},
		{name: "subcommand", in: "index create src1 --tag reg/x:1 src2 --format docker", want: "index create --tag reg/x:1 --format docker src1 src2"},
		{name: "render kinds", in: "render cronjob --namespace ci", want: "render --namespace ci cronjob"},
		{name: "unknown flag left for cli to report", in: "build api --bogus x", want: "build --bogus api x"},
		{name: "unknown command", in: "bogus a --b c", want: "bogus a --b c"},
		{name: "app flags", in: "--help", want: "--help"},
		{name: "completion words stay as typed", in: "__complete build api --platform", want: "__complete build api --platform"},
		{name: "trailing value flag", in: "build api --platform", want: "build --platform api"},
		{name: "kaniko short -c", in: "build -c /ws -v debug", want: "build -c /ws -v debug"},
	}
	app := newApp()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := reorderArgs(app, append([]string{"kiln"}, strings.Fields(tt.in)...))
			if want := append([]string{"kiln"}, strings.Fields(tt.want)...); !slices.Equal(got, want) {
				t.Errorf("reorderArgs(%q) = %q, want %q", tt.in, got, want)
			}
		})
	}
}

// TestFlagsAfterNames runs commands with flags after their names.
func TestFlagsAfterNames(t *testing.T) {
	ctxDir := t.TempDir()
	writeFiles(t, ctxDir, map[string]string{
		"Dockerfile": "FROM busybox:1.36\n",
		"build.toml": "[images.api]\ncontext = \".\"\nplatforms = [\"linux/amd64\"]\ntags = [\"registry.example.com/acme/api:1\"]\n",
	})
	out, err := runApp(t, "build", "--config", ctxDir+"/build.toml", "api", "--platform", "linux/arm64", "--dryrun", "-v", "warn")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "would build api for linux/arm64") || !strings.Contains(out, "would push registry.example.com/acme/api:1") {
		t.Errorf("kiln build --config F api --platform linux/arm64 --dryrun printed:\n%s", out)
	}
}

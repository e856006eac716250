package test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestWarmBadInput: bad flags, a bad build.toml or a bad Dockerfile exit 2
// with a message that says what and where, before anything is attempted
// (the cache folder is not even created). No registry is needed: the
// references point at a closed port.
func TestWarmBadInput(t *testing.T) {
	t.Parallel()
	const ref = "127.0.0.1:9/bad/input:1" // never contacted
	goodImage := "[images.app]\ncontext = \"ctx\"\nplatforms = [\"linux/amd64\"]\ntags = [\"127.0.0.1:9/out/app:1\"]\n"
	tests := []struct {
		name  string
		files map[string]string // written into the working directory
		args  []string          // after "warm --cache-dir CACHE"
		env   []string
		want  []string // regexps the output must match
	}{
		{
			name:  "invalid TOML",
			files: map[string]string{"build.toml": "[cache]\njobs = = 3\n"},
			args:  []string{"--config", "build.toml"},
			want:  []string{`build\.toml:2:8\b`, `cache\.jobs`},
		},
		{
			name:  "unknown key",
			files: map[string]string{"build.toml": "[cache]\ndir = \"x\"\nmax_agee = \"1h\"\n"},
			args:  []string{"--config", "build.toml"},
			want:  []string{`build\.toml:3:\d+: cache\.max_agee: unknown key`},
		},
		{
			name:  "wrong type",
			files: map[string]string{"build.toml": "[warm]\nplatforms = \"linux/amd64\"\nextra = [\"" + ref + "\"]\n"},
			args:  []string{"--config", "build.toml"},
			want:  []string{`build\.toml:2:\d+: warm\.platforms`},
		},
		{
			name:  "bad platform in build.toml",
			files: map[string]string{"build.toml": "[warm]\nplatforms = [\"linux/amd64\", \"linux/amd46\"]\nextra = [\"" + ref + "\"]\n"},
			args:  []string{"--config", "build.toml"},
			want:  []string{`build\.toml:2:\d+: warm\.platforms\[1\]`, `amd46`},
		},
		{
			name: "bad --platform",
			args: []string{"--image", ref, "--platform", "linux/amd46"},
			want: []string{`--platform`, `linux/amd46`},
		},
		{
			name: "bad --platform with too many parts",
			args: []string{"--image", ref, "--platform", "linux/arm/v7/extra"},
			want: []string{`--platform`, `linux/arm/v7/extra`},
		},
		{
			name: "bad --image",
			args: []string{"--image", "Not A/Reference", "--platform", "linux/amd64"},
			want: []string{`--image`, `Not A/Reference`},
		},
		{
			name: "bad --image digest",
			args: []string{"--image", "127.0.0.1:9/x@sha256:1234", "--platform", "linux/amd64"},
			want: []string{`--image`, `sha256:1234`},
		},
		{
			name: "broken Dockerfile",
			files: map[string]string{
				"build.toml":     goodImage,
				"ctx/Dockerfile": "FROM " + ref + "\nRUN echo hi\nFROMM scratch\n",
			},
			args: []string{"--config", "build.toml"},
			want: []string{`images\.app`, `ctx/Dockerfile:3\b`, `FROMM`},
		},
		{
			name: "Dockerfile FROM with an invalid reference",
			files: map[string]string{
				"build.toml":     goodImage,
				"ctx/Dockerfile": "ARG V=Latest\nFROM scratch AS a\nFROM 127.0.0.1:9/Bad/Name:$V\n",
			},
			args: []string{"--config", "build.toml"},
			want: []string{`ctx/Dockerfile:3\b`, `Bad/Name`},
		},
		{
			name:  "missing Dockerfile",
			files: map[string]string{"build.toml": goodImage, "ctx/README": "no Dockerfile here\n"},
			args:  []string{"--config", "build.toml"},
			want:  []string{`images\.app`, `Dockerfile`},
		},
		{
			name: "--jobs 0",
			args: []string{"--image", ref, "--jobs", "0"},
			want: []string{`--jobs`, `\b0\b`},
		},
		{
			name: "KILN_JOBS=0",
			args: []string{"--image", ref},
			env:  []string{"KILN_JOBS=0"},
			want: []string{`--jobs`},
		},
		{
			name: "--jobs not a number",
			args: []string{"--image", ref, "--jobs", "many"},
			want: []string{`jobs`, `many`},
		},
		{
			name: "--max-age not a duration",
			args: []string{"--image", ref, "--refresh", "--max-age", "yesterday"},
			want: []string{`max-age`, `yesterday`},
		},
		{
			name: "missing explicit --config",
			args: []string{"--config", "does-not-exist.toml"},
			want: []string{`does-not-exist\.toml`},
		},
		{
			name: "missing KILN_CONFIG",
			env:  []string{"KILN_CONFIG=does-not-exist.toml"},
			want: []string{`does-not-exist\.toml`},
		},
		{
			name: "nothing to warm",
			args: []string{"--platform", "linux/amd64"},
			want: []string{`nothing to warm`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			writeFiles(t, dir, tc.files)
			cache := filepath.Join(dir, "cache")
			args := append([]string{"warm", "--cache-dir", cache}, tc.args...)
			r := runKilnOpts(t, runOpts{dir: dir, env: tc.env}, args...)
			mustExit(t, r, 2)
			for _, re := range tc.want {
				if !regexp.MustCompile(re).MatchString(r.stderr) {
					t.Errorf("stderr does not match %q:\n%s", re, r)
				}
			}
			if n := strings.Count(r.stderr, "\n"); n > 5 {
				t.Errorf("a usage error should be a short message, not %d lines:\n%s", n, r)
			}
			if _, err := os.Stat(cache); err == nil {
				t.Errorf("bad input created the cache folder %s", cache)
			}
		})
	}
}

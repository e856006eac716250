package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCompletionBash loads `kiln completion bash` into a real bash and
// calls its completion function as bash does on TAB (COMP_WORDS and
// COMP_CWORD set): it completes a command, a flag, a flag's value, and an
// image name from build.toml.
func TestCompletionBash(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"build.toml": `[images.api]
context = "."
platforms = ["linux/amd64"]
tags = ["registry.example.com/acme/api:1"]

[images.worker]
context = "."
platforms = ["linux/amd64"]
tags = ["registry.example.com/acme/worker:1"]
`})
	script := `set -e
source <(kiln completion bash)
complete -p kiln
comp() { COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); COMPREPLY=(); _kiln; echo "$* => ${COMPREPLY[*]}"; }
comp kiln bui
comp kiln build --no-pu
comp kiln build --platform linux/arm
comp kiln build --platform = linux/s
comp kiln build w
comp kiln build-all --config build.toml --jobs 2 a
comp kiln build --context Dock
`
	writeFiles(t, dir, map[string]string{"Dockerfile": "FROM scratch\n"})
	out, stderr, err := toolRunEnv(t.Context(), t, dir, []string{"PATH=" + filepath.Dir(kilnBin) + ":" + os.Getenv("PATH")}, "bash", "-c", script)
	if err != nil {
		t.Fatalf("bash: %v\n%s%s", err, out, stderr)
	}
	for _, want := range []string{
		"complete -F _kiln kiln",
		"kiln bui => build build-all",
		"kiln build --no-pu => --no-push --no-push-cache",
		"kiln build --platform linux/arm => linux/arm64 linux/arm/v7 linux/arm/v6",
		"kiln build --platform = linux/s => linux/s390x",
		"kiln build w => worker",
		"kiln build-all --config build.toml --jobs 2 a => api",
		"kiln build --context Dock => Dockerfile",
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("bash completion: no line %q in\n%s", want, out)
		}
	}
}

// TestCompletionZshFish loads the zsh and fish scripts into real shells
// (where installed): zsh's completion function called with words and
// CURRENT set (compadd and _files stand-ins print what they are given),
// fish's through complete -C, as on TAB.
func TestCompletionZshFish(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"build.toml": `[images.api]
context = "."
platforms = ["linux/amd64"]
tags = ["registry.example.com/acme/api:1"]
`})
	env := []string{"PATH=" + filepath.Dir(kilnBin) + ":" + os.Getenv("PATH")}
	tests := []struct {
		shell  string
		script string
		want   []string
	}{
		{shell: "zsh", script: `compdef() { : }
compadd() { local name=${@[-1]}; print -r -- "=> ${(j: :)${(P)name}}" }
_files() { print -r -- "=> FILES" }
source <(kiln completion zsh)
words=(kiln bui); CURRENT=2; _kiln
words=(kiln build --platform=linux/s); CURRENT=3; _kiln
words=(kiln build ""); CURRENT=3; _kiln
words=(kiln build --context ""); CURRENT=4; _kiln
`, want: []string{"=> build build-all", "=> --platform=linux/s390x", "=> api", "=> FILES"}},
		{shell: "fish", script: `kiln completion fish | source
complete -C "kiln bui"
complete -C "kiln build --platform=linux/s"
complete -C "kiln build --no-pu"
complete -C "kiln build "
`, want: []string{"build\nbuild-all", "--platform=linux/s390x", "--no-push\n--no-push-cache", "api"}},
	}
	for _, tt := range tests {
		t.Run(tt.shell, func(t *testing.T) {
			if _, err := exec.LookPath(tt.shell); err != nil {
				t.Skipf("no %s (apt-get install %s)", tt.shell, tt.shell)
			}
			args := []string{"-c", tt.script}
			if tt.shell == "zsh" {
				args = append([]string{"-f"}, args...) // no rc files
			}
			out, stderr, err := toolRunEnv(t.Context(), t, dir, env, tt.shell, args...)
			if err != nil {
				t.Fatalf("%s: %v\n%s%s", tt.shell, err, out, stderr)
			}
			for _, want := range tt.want {
				if !strings.Contains(out, want+"\n") {
					t.Errorf("%s completion: no %q in\n%s", tt.shell, want, out)
				}
			}
		})
	}
}

package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"kiln/config"
	"kiln/platform"
)

// Shell completion: `kiln completion bash|zsh|fish` prints a script that
// asks the hidden `kiln __complete WORD...` what may come next. The words
// are the command line after "kiln", the last one the word being completed
// (possibly empty); the answer is a candidate a line, or filesAnswer alone
// when the shell should complete a path. All the knowledge is here, in Go:
// the scripts only pass words and fill the shell's list.

// filesAnswer asks the shell for its own path completion.
const filesAnswer = "__files__"

// commonPlatforms are offered for --platform besides build.toml's.
var commonPlatforms = []string{"linux/amd64", "linux/arm64", "linux/arm/v7", "linux/arm/v6", "linux/386", "linux/ppc64le", "linux/s390x", "linux/riscv64"}

// flagValues are the fixed values of flags that have them.
var flagValues = map[string][]string{
	"progress":      {"auto", "tty", "plain"},
	"log-format":    {"text", "json"},
	"verbosity":     {"trace", "debug", "info", "warn", "error", "fatal", "panic"},
	"isolation":     {"auto", "chroot", "rootless", "container"},
	"snapshot":      {"auto", "overlay", "walk"},
	"snapshot-mode": {"full", "redo", "time"},
	"runner":        {"local", "kubernetes"},
	"format":        {"oci", "docker"},
	"image-format":  {"docker", "oci"},
	"compression":   {"gzip", "zstd"},
}

// pathFlags take a file or folder.
var pathFlags = []string{"config", "context", "dockerfile", "cache-dir", "work-dir", "tar-path", "digest-file", "metadata-file",
	"report", "oci-layout-path", "kaniko-dir", "image-name-with-digest-file", "image-name-tag-with-digest-file", "kubeconfig"}

// renderKinds are kiln render's KINDs.
var renderKinds = []string{"rbac", "pvc", "cronjob", "warm-init", "job", "all"}

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script: bash, zsh or fish",
		ArgsUsage: "bash|zsh|fish",
		Description: `Completes commands, flags, image names from build.toml (the one --config names, else
./build.toml) and platforms for --platform.

   source <(kiln completion bash)                           # in ~/.bashrc
   source <(kiln completion zsh)                            # in ~/.zshrc, after compinit
   kiln completion fish > ~/.config/fish/completions/kiln.fish`,
		Action: func(c *cli.Context) error {
			script, ok := completionScripts[c.Args().First()]
			if !ok || c.NArg() != 1 {
				return cli.Exit("kiln completion: name one shell: bash, zsh or fish", exitUsage)
			}
			fmt.Fprint(c.App.Writer, script)
			return nil
		},
		OnUsageError: usageError,
	}
}

func completeCommand() *cli.Command {
	return &cli.Command{
		Name:            "__complete",
		Hidden:          true,
		SkipFlagParsing: true,
		Action: func(c *cli.Context) error {
			for _, s := range complete(c.App, c.Args().Slice()) {
				fmt.Fprintln(c.App.Writer, s)
			}
			return nil
		},
	}
}

// complete answers what may replace the last of words (the command line
// after "kiln"): candidates that start with it, or filesAnswer.
func complete(app *cli.App, words []string) []string {
	if len(words) == 0 {
		words = []string{""}
	}
	cur, before := words[len(words)-1], words[:len(words)-1]
	// bash splits --flag=value at "=": [... --flag = value]. So does the
	// cursor right after "=": [... --flag =].
	if cur == "=" {
		cur, before = "", append(slices.Clone(before), "=")
	}
	if n := len(before); n >= 2 && before[n-1] == "=" {
		before = before[:n-1]
	}
	cmd, sub := commandOf(app, before)
	if cmd == nil {
		return withPrefix(visibleCommands(app.Commands), cur)
	}
	configFile := flagValueIn(before, "config")
	if name, value, ok := strings.Cut(cur, "="); ok && strings.HasPrefix(name, "-") {
		// zsh and fish keep --flag=value whole.
		vals := valuesOf(cmd, strings.TrimLeft(name, "-"), configFile)
		if len(vals) == 1 && vals[0] == filesAnswer {
			return vals
		}
		out := withPrefix(vals, value)
		for i := range out {
			out[i] = name + "=" + out[i]
		}
		return out
	}
	if n := len(before); n > 0 && strings.HasPrefix(before[n-1], "-") && !strings.Contains(before[n-1], "=") {
		if f := lookupFlag(cmd, strings.TrimLeft(before[n-1], "-")); f != nil && takesValue(f) {
			vals := valuesOf(cmd, f.Names()[0], configFile)
			if len(vals) == 1 && vals[0] == filesAnswer {
				return vals
			}
			return withPrefix(vals, cur)
		}
	}
	if strings.HasPrefix(cur, "-") {
		return withPrefix(flagNames(cmd), cur)
	}
	if !sub && len(cmd.Subcommands) > 0 {
		return withPrefix(visibleCommands(cmd.Subcommands), cur)
	}
	return withPrefix(positionals(cmd, configFile, before), cur)
}

// commandOf finds the (sub)command the words name; sub says a subcommand
// was found.
func commandOf(app *cli.App, words []string) (*cli.Command, bool) {
	var cmd *cli.Command
	cmds := app.Commands
	for i := 0; i < len(words); i++ {
		w := words[i]
		if strings.HasPrefix(w, "-") {
			if cmd != nil {
				if f := lookupFlag(cmd, strings.TrimLeft(w, "-")); f != nil && takesValue(f) && !strings.Contains(w, "=") {
					i++ // its value
				}
			}
			continue
		}
		next := findCommand(cmds, w)
		if next == nil {
			if cmd == nil {
				return nil, false
			}
			continue // a positional
		}
		if cmd != nil {
			return next, true
		}
		cmd, cmds = next, next.Subcommands
	}
	return cmd, false
}

// positionals are what a command's arguments may be.
func positionals(cmd *cli.Command, configFile string, before []string) []string {
	switch cmd.Name {
	case "build", "build-all":
		return imageNames(configFile)
	case "render":
		return append(slices.Clone(renderKinds), imageNames(configFile)...)
	case "completion":
		if before[len(before)-1] == "completion" {
			return []string{"bash", "zsh", "fish"}
		}
	}
	return nil
}

// valuesOf are the values of a command's flag: fixed ones, platforms,
// files, or none.
func valuesOf(cmd *cli.Command, flag, configFile string) []string {
	f := lookupFlag(cmd, flag)
	if f == nil {
		return nil
	}
	name := f.Names()[0]
	switch {
	case name == "platform" || name == "custom-platform" || name == "customPlatform":
		return platforms(configFile)
	case slices.Contains(pathFlags, name):
		return []string{filesAnswer}
	}
	return flagValues[name]
}

// imageNames are build.toml's images; none if it cannot be read.
func imageNames(configFile string) []string {
	cfg, err := config.Load(configFile, config.AllowPathsUnder("/"))
	if err != nil {
		return nil
	}
	return cfg.ImageNames()
}

// platforms are build.toml's (its images' and [warm]'s), then the common ones.
func platforms(configFile string) []string {
	var out []string
	if cfg, err := config.Load(configFile, config.AllowPathsUnder("/")); err == nil {
		for _, name := range cfg.ImageNames() {
			img := cfg.Images[name]
			for _, p := range append(append(slices.Clone(img.Platforms), img.OptionalPlatforms...), cfg.Warm.Platforms...) {
				if s := platform.Format(p); !slices.Contains(out, s) {
					out = append(out, s)
				}
			}
		}
	}
	for _, p := range commonPlatforms {
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// flagValueIn is the value the words give a flag, or its default.
func flagValueIn(words []string, flag string) string {
	v := "build.toml"
	for i, w := range words {
		switch {
		case w == "--"+flag && i+1 < len(words):
			v = words[i+1]
		case strings.HasPrefix(w, "--"+flag+"="):
			v = strings.TrimPrefix(w, "--"+flag+"=")
		}
	}
	return v
}

func lookupFlag(cmd *cli.Command, name string) cli.Flag {
	for _, f := range cmd.Flags {
		if slices.Contains(f.Names(), name) {
			return f
		}
	}
	return nil
}

func takesValue(f cli.Flag) bool {
	df, ok := f.(cli.DocGenerationFlag)
	return ok && df.TakesValue()
}

// flagNames are a command's visible flags, long form, and --help.
func flagNames(cmd *cli.Command) []string {
	out := []string{"--help"}
	for _, f := range cmd.Flags {
		if vf, ok := f.(cli.VisibleFlag); ok && !vf.IsVisible() {
			continue
		}
		for _, n := range f.Names() {
			if len(n) > 1 {
				out = append(out, "--"+n)
			}
		}
	}
	slices.Sort(out)
	return out
}

func visibleCommands(cmds []*cli.Command) []string {
	var out []string
	for _, c := range cmds {
		if !c.Hidden {
			out = append(out, c.Name)
		}
	}
	return out
}

func withPrefix(candidates []string, prefix string) []string {
	var out []string
	for _, c := range candidates {
		if strings.HasPrefix(c, prefix) {
			out = append(out, c)
		}
	}
	return out
}

var completionScripts = map[string]string{
	"bash": `# kiln completion for bash: source <(kiln completion bash)
_kiln() {
    local cur="${COMP_WORDS[COMP_CWORD]}"
    local IFS=$'\n'
    local out
    out=$("${COMP_WORDS[0]}" __complete "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null) || return 0
    [[ "$cur" == "=" ]] && cur=""
    if [[ "$out" == "` + filesAnswer + `" ]]; then
        compopt -o filenames 2>/dev/null || true
        COMPREPLY=($(compgen -f -- "$cur"))
        return 0
    fi
    COMPREPLY=($(compgen -W "$out" -- "$cur"))
}
complete -F _kiln kiln
`,
	"zsh": `#compdef kiln
# kiln completion for zsh: source <(kiln completion zsh), after compinit
_kiln() {
    local -a out
    out=("${(@f)$("${words[1]}" __complete "${(@)words[2,CURRENT]}" 2>/dev/null)}")
    if [[ "${out[1]}" == "` + filesAnswer + `" ]]; then
        _files
        return
    fi
    compadd -a out
}
compdef _kiln kiln
`,
	"fish": `# kiln completion for fish: kiln completion fish > ~/.config/fish/completions/kiln.fish
function __kiln_complete
    set -l words (commandline -opc) (commandline -ct)
    set -l out ($words[1] __complete $words[2..-1] 2>/dev/null)
    if test "$out[1]" = "` + filesAnswer + `"
        __fish_complete_path (commandline -ct)
        return
    end
    printf '%s\n' $out
end
complete -c kiln -f -a '(__kiln_complete)'
`,
}

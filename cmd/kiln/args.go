package main

import (
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// reorderArgs lets flags follow positional arguments in every command
// (kiln build NAME --platform linux/arm64): urfave/cli, like Go's flag
// package, stops parsing flags at the first positional, so each command's
// flags, with their values, are moved ahead of its positionals. Which flags
// take a value is read from the command's flag definitions; "--" still
// ends the flags, and what follows it stays positional. Arguments of an
// unknown command are left as they are, for urfave/cli to report.
func reorderArgs(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	i := 1
	for i < len(args) && strings.HasPrefix(args[i], "-") {
		i++ // the app's own flags (--help, --version): none takes a value
	}
	if i == len(args) {
		return args
	}
	cmd := findCommand(app.Commands, args[i])
	if cmd == nil || cmd.SkipFlagParsing {
		return args
	}
	return append(slices.Clone(args[:i+1]), reorderCommand(cmd, args[i+1:])...)
}

// reorderCommand puts cmd's flags before its positionals; a first
// positional naming a subcommand starts that subcommand's arguments.
func reorderCommand(cmd *cli.Command, args []string) []string {
	takesValue := valueFlags(cmd.Flags)
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			flags = append(flags, "--")
			return append(append(flags, pos...), args[i+1:]...)
		case a == "-" || !strings.HasPrefix(a, "-"):
			if len(pos) == 0 {
				if sub := findCommand(cmd.Subcommands, a); sub != nil {
					return append(append(flags, a), reorderCommand(sub, args[i+1:])...)
				}
			}
			pos = append(pos, a)
		default:
			flags = append(flags, a)
			name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
			if !hasValue && takesValue[name] && i+1 < len(args) {
				i++
				flags = append(flags, args[i])
			}
		}
	}
	return append(flags, pos...)
}

// valueFlags names (every name and alias of) the flags that take a value.
func valueFlags(flags []cli.Flag) map[string]bool {
	out := map[string]bool{}
	for _, f := range flags {
		if df, ok := f.(cli.DocGenerationFlag); ok && df.TakesValue() {
			for _, n := range f.Names() {
				out[n] = true
			}
		}
	}
	return out
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

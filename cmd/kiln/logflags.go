package main

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/urfave/cli/v2"
)

// levelTrace is kaniko's trace level, below debug.
const levelTrace = slog.LevelDebug - 4

// levelFatal is above every line kiln logs: kaniko's fatal and panic
// levels, at which only the final error (printed by main) is shown.
const levelFatal = slog.LevelError + 4

// verbosityLevels are kaniko's --verbosity names (logrus levels) and the
// slog levels they become.
var verbosityLevels = map[string]slog.Level{
	"panic": levelFatal,
	"fatal": levelFatal,
	"error": slog.LevelError,
	"warn":  slog.LevelWarn,
	"info":  slog.LevelInfo,
	"debug": slog.LevelDebug,
	"trace": levelTrace,
}

func logFormatFlag() cli.Flag {
	return &cli.StringFlag{Name: "log-format", Value: "text", Usage: "log lines as text (key=value) or json (kaniko's color is text)", EnvVars: envs("LOG_FORMAT")}
}

func verbosityFlag() cli.Flag {
	return &cli.StringFlag{Name: "verbosity", Aliases: []string{"v"}, Usage: "the least important log lines shown: trace, debug, info, warn, error, fatal or panic (kaniko's levels)",
		DefaultText: "info; warn under a live display", EnvVars: envs("VERBOSITY")}
}

func logTimestampFlag() cli.Flag {
	return &cli.BoolFlag{Name: "log-timestamp", Value: true, Usage: "start each log line with its time (kaniko's flag; --log-timestamp=false leaves it out)", EnvVars: envs("LOG_TIMESTAMP")}
}

// logOptions are the log flags read: format, level and time stamps.
type logOptions struct {
	json      bool
	level     slog.Level
	levelSet  bool // --verbosity given: a live display does not raise it to warn
	timestamp bool
}

// logOptionsOf reads --log-format, --verbosity and --log-timestamp; a
// command without one of them gets its default.
func logOptionsOf(c *cli.Context) (logOptions, error) {
	lo := logOptions{level: slog.LevelInfo, timestamp: true}
	switch f := logFormat(c); f {
	case "text":
	case "json":
		lo.json = true
	default:
		return lo, fmt.Errorf("--log-format: want text or json, got %q", f)
	}
	if v := c.String("verbosity"); v != "" {
		l, ok := verbosityLevels[strings.ToLower(v)]
		if !ok {
			return lo, fmt.Errorf("--verbosity %q: want trace, debug, info, warn, error, fatal or panic", v)
		}
		lo.level, lo.levelSet = l, true
	}
	if c.IsSet("log-timestamp") {
		lo.timestamp = c.Bool("log-timestamp")
	}
	return lo, nil
}

// logFormat is --log-format with kaniko's "color" (its default) read as
// text: kiln's text lines are never coloured.
func logFormat(c *cli.Context) string {
	if f := c.String("log-format"); f != "color" {
		return f
	}
	return "text"
}

// logger makes the logger the options describe, writing to w.
func (lo logOptions) logger(w io.Writer) *slog.Logger {
	hopts := &slog.HandlerOptions{Level: lo.level, ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) > 0 {
			return a
		}
		switch {
		case a.Key == slog.TimeKey && !lo.timestamp:
			return slog.Attr{} // dropped
		case a.Key == slog.LevelKey:
			if l, ok := a.Value.Any().(slog.Level); ok && l <= levelTrace {
				return slog.String(slog.LevelKey, "TRACE")
			}
		}
		return a
	}}
	if lo.json {
		return slog.New(slog.NewJSONHandler(w, hopts))
	}
	return slog.New(slog.NewTextHandler(w, hopts))
}

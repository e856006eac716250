package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"kiln/config"
)

// excludeOutputs returns the outputs (files or folders kiln is about to
// write) that lie inside the build context folder, relative to it, so the
// build leaves them out: otherwise `kiln build --context .` with the
// default ./out/<name> would copy its last output into the next image,
// growing it every run. Each one is said once, as a warning. Contexts that
// are not local folders (tar, stdin, git) hold no outputs.
func excludeOutputs(log *slog.Logger, contextDir string, outputs ...string) []string {
	fi, err := os.Stat(contextDir)
	if err != nil || !fi.IsDir() {
		return nil
	}
	root, err := config.RealPath(contextDir)
	if err != nil {
		return nil
	}
	var out []string
	for _, o := range outputs {
		if o == "" || o == "-" {
			continue
		}
		p, err := config.RealPath(o)
		if err != nil {
			continue
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			continue
		}
		rel = widen(root, rel)
		log.Warn("the output lies inside the build context: it is left out of the context", "output", o, "context", contextDir, "excluded", filepath.ToSlash(rel))
		out = append(out, filepath.ToSlash(rel))
	}
	return out
}

// widen climbs from rel (an output inside root) to the highest folder that
// holds nothing but the way to it, or does not exist yet: the ./out that a
// first build creates must not make the second build's context differ.
func widen(root, rel string) string {
	parts := strings.Split(rel, string(filepath.Separator))
	for i := len(parts) - 1; i >= 1; i-- {
		anc := filepath.Join(parts[:i]...)
		entries, err := os.ReadDir(filepath.Join(root, anc))
		if err == nil && (len(entries) > 1 || len(entries) == 1 && entries[0].Name() != parts[i]) {
			break
		}
		if err != nil && !os.IsNotExist(err) {
			break
		}
		rel = anc
	}
	return rel
}

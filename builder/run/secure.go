package run

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
)

const maxSymlinks = 255

// securePath resolves p as if root were "/": symlinks (absolute ones too)
// and ".." never leave root. Components that do not exist are kept as
// written. The result is a host path under root.
func securePath(root, p string) (string, error) {
	resolved := "" // relative to root, clean, no leading slash
	rest := p
	links := 0
	for rest != "" {
		var part string
		part, rest, _ = strings.Cut(strings.TrimLeft(rest, "/"), "/")
		switch part {
		case "", ".":
			continue
		case "..":
			resolved = strings.TrimPrefix(path.Dir("/"+resolved), "/")
			continue
		}
		next := path.Join(resolved, part)
		fi, err := os.Lstat(filepath.Join(root, next))
		if errors.Is(err, fs.ErrNotExist) {
			resolved = next
			continue
		}
		if err != nil {
			return "", fmt.Errorf("resolving %s in %s: %w", p, root, err)
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			resolved = next
			continue
		}
		if links++; links > maxSymlinks {
			return "", fmt.Errorf("resolving %s in %s: %w", p, root, syscall.ELOOP)
		}
		target, err := os.Readlink(filepath.Join(root, next))
		if err != nil {
			return "", fmt.Errorf("resolving %s in %s: %w", p, root, err)
		}
		if path.IsAbs(target) {
			resolved = ""
		}
		rest = target + "/" + rest
	}
	return filepath.Join(root, resolved), nil
}

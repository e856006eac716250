package runner

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"strings"

	specs "github.com/opencontainers/image-spec/specs-go/v1"

	"kiln/platform"
)

// DefaultBinfmtDir is where Linux mounts binfmt_misc.
const DefaultBinfmtDir = "/proc/sys/fs/binfmt_misc"

// qemuArch names each architecture as QEMU's user-mode emulators do.
var qemuArch = map[string]string{
	"amd64":    "x86_64",
	"386":      "i386",
	"arm64":    "aarch64",
	"arm":      "arm",
	"s390x":    "s390x",
	"ppc64le":  "ppc64le",
	"ppc64":    "ppc64",
	"riscv64":  "riscv64",
	"mips64le": "mips64el",
	"mips64":   "mips64",
	"mipsle":   "mipsel",
	"mips":     "mips",
	"loong64":  "loongarch64",
}

// BinfmtHandler finds an enabled binfmt_misc handler for p's architecture
// in dir: an entry whose name holds "qemu-<arch>" ("qemu-aarch64" for arm64,
// "qemu-arm" but not "qemu-armeb" for arm), as tonistiigi/binfmt and
// distribution packages register them. A missing or unreadable dir, or a
// disabled binfmt_misc, has none.
func BinfmtHandler(dir string, p specs.Platform) (string, bool) {
	arch, ok := qemuArch[platform.Normalize(p).Architecture]
	if !ok {
		return "", false
	}
	if status, err := firstLine(filepath.Join(dir, "status")); err == nil && status != "enabled" {
		return "", false
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", false
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	for _, n := range names {
		if n == "status" || n == "register" || !namesArch(n, "qemu-"+arch) {
			continue
		}
		if state, err := firstLine(filepath.Join(dir, n)); err == nil && state == "enabled" {
			return n, true
		}
	}
	return "", false
}

// namesArch reports whether name holds want not followed by a letter or
// digit: qemu-arm is in "qemu-arm" and "qemu-arm-static", not "qemu-armeb".
func namesArch(name, want string) bool {
	for i := strings.Index(name, want); i >= 0; {
		end := i + len(want)
		if end == len(name) || !isAlnum(name[end]) {
			return true
		}
		next := strings.Index(name[i+1:], want)
		if next < 0 {
			return false
		}
		i += 1 + next
	}
	return false
}

func isAlnum(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9'
}

// firstLine reads a binfmt_misc file's first line ("enabled", "disabled").
func firstLine(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan()
	return strings.TrimSpace(sc.Text()), sc.Err()
}

package run

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// ContainerMountPoints lists the mount points of this process's mount
// table (/proc/self/mountinfo) other than "/": in container mode, what a
// snapshot must leave alone (the cache volume, a secret, the
// service-account token, /proc, /sys, /dev) and what a stage change must
// never delete.
func ContainerMountPoints() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("reading the mount table: %w", err)
	}
	defer f.Close()
	return parseMountinfo(f)
}

// parseMountinfo returns the mount points (field 5) of a mountinfo table,
// unescaped, once each, in table order, "/" left out.
func parseMountinfo(r io.Reader) ([]string, error) {
	var pts []string
	seen := map[string]bool{"/": true}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			return nil, fmt.Errorf("mountinfo line %q: too few fields", sc.Text())
		}
		p := unescapeOctal(fields[4])
		if !seen[p] {
			seen[p] = true
			pts = append(pts, p)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading the mount table: %w", err)
	}
	return pts, nil
}

// unescapeOctal undoes the kernel's \ooo escapes of space, tab, newline
// and backslash.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

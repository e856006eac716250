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

// mountEntry is one line of a mountinfo table (proc(5)).
type mountEntry struct {
	root, point  string   // fields 4 and 5, unescaped
	options      []string // field 6: the mount's own options
	fstype       string   // after " - "
	superOptions []string // the filesystem's options
}

// readMountinfo parses a mountinfo table; a line without its first six
// fields is an error.
func readMountinfo(r io.Reader) ([]mountEntry, error) {
	var out []mountEntry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		before, after, _ := strings.Cut(sc.Text(), " - ")
		fields, tail := strings.Fields(before), strings.Fields(after)
		if len(fields) < 6 {
			return nil, fmt.Errorf("mountinfo line %q: too few fields", sc.Text())
		}
		e := mountEntry{root: unescapeOctal(fields[3]), point: unescapeOctal(fields[4]), options: strings.Split(fields[5], ",")}
		if len(tail) >= 3 {
			e.fstype, e.superOptions = tail[0], strings.Split(tail[2], ",")
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading the mount table: %w", err)
	}
	return out, nil
}

// parseMountinfo returns the mount points of a mountinfo table, once
// each, in table order, "/" left out.
func parseMountinfo(r io.Reader) ([]string, error) {
	entries, err := readMountinfo(r)
	if err != nil {
		return nil, err
	}
	var pts []string
	seen := map[string]bool{"/": true}
	for _, e := range entries {
		if !seen[e.point] {
			seen[e.point] = true
			pts = append(pts, e.point)
		}
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

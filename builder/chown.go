package builder

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strconv"
	"strings"

	mode "github.com/tonistiigi/dchapes-mode"

	"kiln/builder/rootfs"
)

// owner is a numeric uid and gid for new files.
type owner struct{ uid, gid int }

// resolveOwner turns a --chown or USER value ("user[:group]", names or
// numbers) into ids, reading names from the stage's /etc/passwd and
// /etc/group. A user alone gets its primary group when named, the same
// number when numeric. nil: spec is empty, files keep their owners.
func (b *builder) resolveOwner(ctx context.Context, s *stageState, spec string) (*owner, error) {
	if spec == "" {
		return nil, nil
	}
	user, group, hasGroup := strings.Cut(spec, ":")
	uid, primary, err := b.lookupID(ctx, s, user, "/etc/passwd")
	if err != nil {
		return nil, err
	}
	gid := primary
	if hasGroup {
		if gid, _, err = b.lookupID(ctx, s, group, "/etc/group"); err != nil {
			return nil, err
		}
	}
	return &owner{uid: uid, gid: gid}, nil
}

// errLinkChownName is BuildKit's refusal of --chown names with --link
// (dockerfile2llb convert_copy.go): a linked copy is made into an empty
// filesystem, which has no /etc/passwd to read them from.
var errLinkChownName = errors.New("user and group names can't be resolved when used with --link, use numeric uid[:gid] instead")

// chownByName tells whether a --chown value names a user or group rather
// than giving numbers; "root" counts as 0, as in BuildKit (llb.WithUser).
func chownByName(spec string) bool {
	for _, part := range strings.SplitN(spec, ":", 2) {
		if part == "" || part == "root" {
			continue
		}
		if _, err := strconv.ParseInt(part, 10, 32); err != nil {
			return true
		}
	}
	return false
}

// lookupID finds name's id (third field) and, for passwd, primary gid (fourth)
// in file; a number is its own id and gid, and so is "root" 0, as BuildKit
// reads it without a lookup (llb.WithUser).
func (b *builder) lookupID(ctx context.Context, s *stageState, name, file string) (int, int, error) {
	if name == "root" {
		return 0, 0, nil
	}
	if n, err := strconv.Atoi(name); err == nil {
		if n < 0 {
			return 0, 0, fmt.Errorf("invalid id %d", n)
		}
		return n, n, nil
	}
	files, err := b.stageFiles(ctx, s)
	if err != nil {
		return 0, 0, err
	}
	data, err := files.readFile(file)
	if errors.Is(err, errNoContent) { // not a plain file the index kept: unpack
		var root *rootfs.Root
		if root, err = b.ensureRoot(ctx, s); err == nil {
			data, err = rootFiles{root: root}.readFile(file)
		}
	}
	if err != nil {
		return 0, 0, fmt.Errorf("looking up %q: %w", name, err)
	}
	return scanIDs(bytes.NewReader(data), name, file)
}

// scanIDs reads a passwd or group file for name.
func scanIDs(f io.Reader, name, file string) (int, int, error) {
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) < 3 || fields[0] != name {
			continue
		}
		id, err := strconv.Atoi(fields[2])
		if err != nil {
			return 0, 0, fmt.Errorf("%s: bad id for %q: %w", file, name, err)
		}
		gid := id
		if len(fields) > 3 {
			if g, err := strconv.Atoi(fields[3]); err == nil {
				gid = g
			}
		}
		return id, gid, nil
	}
	if err := sc.Err(); err != nil {
		return 0, 0, fmt.Errorf("reading %s: %w", file, err)
	}
	return 0, 0, fmt.Errorf("unable to find %q in %s", name, file)
}

// chmod is a parsed --chmod: an octal mode, or a symbolic one ("u+x",
// "go-w,a+X") applied to each source's own mode, as BuildKit does.
type chmod struct {
	octal int64
	set   *mode.Set // nil for an octal mode
}

// of is the mode an entry of type typ whose mode was m gets.
func (c *chmod) of(m int64, typ byte) int64 {
	if c.set == nil {
		return c.octal
	}
	fm := fs.FileMode(m & 0o777)
	for bit, flag := range map[int64]fs.FileMode{0o4000: fs.ModeSetuid, 0o2000: fs.ModeSetgid, 0o1000: fs.ModeSticky} {
		if m&bit != 0 {
			fm |= flag
		}
	}
	if typ == tar.TypeDir {
		fm |= fs.ModeDir
	}
	return tarMode(c.set.Apply(fm))
}

// parseChmod reads --chmod: octal ("0755"), or symbolic as chmod(1) has
// it, which BuildKit accepts too; nil when not given.
func parseChmod(spec string) (*chmod, error) {
	if spec == "" {
		return nil, nil
	}
	m, err := strconv.ParseUint(spec, 8, 32)
	if err == nil {
		if m > 0o7777 {
			return nil, fmt.Errorf("invalid --chmod=%s: an octal mode is at most 7777", spec)
		}
		return &chmod{octal: int64(m)}, nil
	}
	if strings.Trim(spec, "0123456789") == "" {
		return nil, fmt.Errorf("invalid --chmod=%s: an octal mode is expected", spec)
	}
	set, err := mode.Parse(spec)
	if err != nil {
		return nil, fmt.Errorf("invalid --chmod=%s: not an octal mode, and as a symbolic one (u+x, go-w, a=rX): %w", spec, err)
	}
	return &chmod{set: &set}, nil
}

package builder

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
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

// lookupID finds name's id (third field) and, for passwd, primary gid (fourth)
// in file; a number is its own id and gid.
func (b *builder) lookupID(ctx context.Context, s *stageState, name, file string) (int, int, error) {
	if n, err := strconv.Atoi(name); err == nil {
		if n < 0 {
			return 0, 0, fmt.Errorf("invalid id %d", n)
		}
		return n, n, nil
	}
	root, err := b.ensureRoot(ctx, s)
	if err != nil {
		return 0, 0, err
	}
	host, err := root.Resolve(file, true)
	if err != nil {
		return 0, 0, err
	}
	f, err := os.Open(host)
	if err != nil {
		return 0, 0, fmt.Errorf("looking up %q: %w", name, err)
	}
	defer f.Close()
	return scanIDs(f, name, file)
}

// scanIDs reads a passwd or group file for name.
func scanIDs(f *os.File, name, file string) (int, int, error) {
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

// parseChmod reads --chmod: octal only, as in BuildKit's classic form.
func parseChmod(spec string) (int64, bool, error) {
	if spec == "" {
		return 0, false, nil
	}
	m, err := strconv.ParseUint(spec, 8, 32)
	if err != nil || m > 0o7777 {
		return 0, false, fmt.Errorf("invalid --chmod=%s: an octal mode is expected", spec)
	}
	return int64(m), true, nil
}

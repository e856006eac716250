package run

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
)

// ResolveUser turns a Dockerfile USER value ("name", "uid", "name:group",
// "uid:gid") into ids, reading root's /etc/passwd and /etc/group without
// leaving root. A name that is not found is an error matching
// ErrUnknownUser; numeric ids need no entry. Without a group, the gid is the
// user's primary group from /etc/passwd (0 when the uid has no entry).
//
// groups are the step's supplementary groups, as BuildKit sets them (and
// runc applies them): the gid first, then, only when USER names no group,
// the groups of /etc/group naming the user as a member (moby/sys/user
// GetExecUser fills Sgids in the implicit form only; BuildKit's
// executor/oci WithUIDGID adds the gid).
func ResolveUser(root, user string) (uid, gid uint32, groups []uint32, err error) {
	if user == "" {
		user = "0" // BuildKit's default (executor/oci GetUser)
	}
	userPart, groupPart, hasGroup := strings.Cut(user, ":")
	if userPart == "" || (hasGroup && groupPart == "") {
		return 0, 0, nil, fmt.Errorf("user %q: %w", user, ErrBadSpec)
	}
	passwd, err := readDB(root, "/etc/passwd")
	if err != nil {
		return 0, 0, nil, fmt.Errorf("resolving user %q: %w", user, err)
	}
	entry, uid, err := findUser(passwd, userPart)
	if err != nil {
		return 0, 0, nil, fmt.Errorf("resolving user %q: %w", user, err)
	}
	if entry != nil {
		g, _ := parseID(entry[3])
		gid = g
	}
	group, err := readDB(root, "/etc/group")
	if err != nil {
		return 0, 0, nil, fmt.Errorf("resolving user %q: %w", user, err)
	}
	if hasGroup {
		if gid, err = findGroup(group, groupPart); err != nil {
			return 0, 0, nil, fmt.Errorf("resolving user %q: %w", user, err)
		}
		return uid, gid, []uint32{gid}, nil
	}
	groups = []uint32{gid}
	if entry != nil {
		groups = append(groups, memberOf(group, entry[0], gid)...)
	}
	return uid, gid, groups, nil
}

// readDB reads a colon-separated database from inside root; a missing file
// is an empty database.
func readDB(root, name string) ([][]string, error) {
	p, err := securePath(root, name)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	defer f.Close()
	var rows [][]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Split(line, ":")
		if len(fields) >= 4 {
			rows = append(rows, fields)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	return rows, nil
}

// findUser finds a passwd entry by name or uid; a numeric user with no
// entry is returned with a nil entry.
func findUser(passwd [][]string, user string) ([]string, uint32, error) {
	if id, err := parseID(user); err == nil {
		for _, e := range passwd {
			if e[2] == user {
				return e, id, nil
			}
		}
		return nil, id, nil
	}
	for _, e := range passwd {
		if e[0] == user {
			id, err := parseID(e[2])
			if err != nil {
				return nil, 0, fmt.Errorf("user %s has uid %q: %w", user, e[2], err)
			}
			return e, id, nil
		}
	}
	return nil, 0, fmt.Errorf("%w: no user %q in /etc/passwd", ErrUnknownUser, user)
}

func findGroup(group [][]string, name string) (uint32, error) {
	if id, err := parseID(name); err == nil {
		return id, nil
	}
	for _, e := range group {
		if e[0] == name {
			return parseID(e[2])
		}
	}
	return 0, fmt.Errorf("%w: no group %q in /etc/group", ErrUnknownUser, name)
}

// memberOf lists the gids of the groups naming user as a member, primary
// excluded, sorted.
func memberOf(group [][]string, user string, primary uint32) []uint32 {
	var ids []uint32
	for _, e := range group {
		if !slices.Contains(strings.Split(e[3], ","), user) {
			continue
		}
		if id, err := parseID(e[2]); err == nil && id != primary && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// extraGroups are the supplementary groups other than the primary gid,
// which ResolveUser lists too (as BuildKit does).
func extraGroups(gid uint32, groups []uint32) []uint32 {
	var out []uint32
	for _, g := range groups {
		if g != gid {
			out = append(out, g)
		}
	}
	return out
}

func parseID(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	return uint32(n), err
}

// HomeDir is the home folder /etc/passwd inside root gives uid, or "/"
// (what runc sets HOME to when the environment has none).
func HomeDir(root string, uid uint32) string {
	passwd, err := readDB(root, "/etc/passwd")
	if err != nil {
		return "/"
	}
	for _, e := range passwd {
		if len(e) > 5 && e[2] == strconv.FormatUint(uint64(uid), 10) && e[5] != "" {
			return e[5]
		}
	}
	return "/"
}

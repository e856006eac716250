package run

import (
	"bufio"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// idRange is one /etc/subuid or /etc/subgid entry.
type idRange struct{ start, count uint32 }

// mapIDs writes the rootless init's uid and gid maps: the caller as 0 and,
// where /etc/subuid, /etc/subgid and newuidmap/newgidmap allow it, a full
// range above; else the caller alone, with a warning. It then checks that
// the step's ids fit, adjusting cfg.
func mapIDs(pid int, cfg *initConfig, log *slog.Logger) error {
	name := userName(os.Getuid())
	uidSize := mapOne(pid, "uid", os.Getuid(), name, log)
	gidSize := mapOne(pid, "gid", os.Getgid(), name, log)
	if uidSize == 1 || gidSize == 1 {
		log.Warn("rootless: single-id user namespace; files can only be owned by root in the image",
			"uid", os.Getuid(), "gid", os.Getgid())
	}
	if cfg.UID >= uidSize {
		return fmt.Errorf("%w: uid %d (the namespace maps %d ids)", ErrUnmappedID, cfg.UID, uidSize)
	}
	if cfg.GID >= gidSize {
		return fmt.Errorf("%w: gid %d (the namespace maps %d ids)", ErrUnmappedID, cfg.GID, gidSize)
	}
	if gidSize == 1 { // setgroups is denied
		if extra := extraGroups(cfg.GID, cfg.Groups); len(extra) > 0 {
			log.Warn("rootless: supplementary groups dropped", "groups", extra)
		}
		cfg.Groups, cfg.SetGroups = nil, false
	}
	for _, g := range cfg.Groups {
		if g >= gidSize {
			return fmt.Errorf("%w: group %d (the namespace maps %d ids)", ErrUnmappedID, g, gidSize)
		}
	}
	return nil
}

// mapOne maps kind ("uid" or "gid") for pid and returns how many ids the
// namespace holds.
func mapOne(pid int, kind string, id int, name string, log *slog.Logger) uint32 {
	if r, ok := subRange("/etc/sub"+kind, id, name); ok {
		helper := "new" + kind + "map"
		if prog, err := exec.LookPath(helper); err == nil {
			out, err := exec.Command(prog, strconv.Itoa(pid), "0", strconv.Itoa(id), "1",
				"1", strconv.FormatUint(uint64(r.start), 10), strconv.FormatUint(uint64(r.count), 10)).CombinedOutput()
			if err == nil {
				return 1 + r.count
			}
			log.Warn("rootless: "+helper+" failed", "err", err, "output", strings.TrimSpace(string(out)))
		}
	}
	procDir := fmt.Sprintf("/proc/%d/", pid)
	if kind == "gid" {
		// An unprivileged gid map needs setgroups denied first.
		if err := os.WriteFile(procDir+"setgroups", []byte("deny"), 0); err != nil {
			log.Warn("rootless: denying setgroups", "err", err)
		}
	}
	if err := os.WriteFile(procDir+kind+"_map", fmt.Appendf(nil, "0 %d 1\n", id), 0); err != nil {
		log.Warn("rootless: writing the "+kind+" map", "err", err)
	}
	return 1
}

// subRange finds the first entry for the user, by name or id, in a
// subordinate id file.
func subRange(file string, id int, name string) (idRange, bool) {
	f, err := os.Open(file)
	if err != nil {
		return idRange{}, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(strings.TrimSpace(sc.Text()), ":")
		if len(fields) != 3 || (fields[0] != name && fields[0] != strconv.Itoa(id)) {
			continue
		}
		start, err1 := parseID(fields[1])
		count, err2 := parseID(fields[2])
		if err1 == nil && err2 == nil && count > 0 {
			return idRange{start, count}, true
		}
	}
	return idRange{}, false
}

// userName is uid's name in the host's /etc/passwd, or "".
func userName(uid int) string {
	passwd, _ := readDB("/", "/etc/passwd")
	for _, e := range passwd {
		if e[2] == strconv.Itoa(uid) {
			return e[0]
		}
	}
	return ""
}

// ContainerIDs is how rootless isolation maps ids, read backwards: the
// owner a file made by a rootless step has on disk, as the user namespace
// sees it. The caller is 0; its /etc/subuid and /etc/subgid ranges, where
// newuidmap and newgidmap exist to map them, are 1 and up; other ids are
// kept.
//
// In kiln's own user namespace (ReexecInUserNamespace) files already show
// the namespace's ids: it is the identity.
func ContainerIDs() func(uid, gid int) (int, int) {
	if InOwnUserNamespace() {
		return func(uid, gid int) (int, int) { return uid, gid }
	}
	name := userName(os.Getuid())
	uids := hostRange("uid", os.Getuid(), name)
	gids := hostRange("gid", os.Getgid(), name)
	return func(uid, gid int) (int, int) {
		return uids(uid), gids(gid)
	}
}

// hostRange maps one kind of host id back into the namespace, as mapOne
// maps it forward.
func hostRange(kind string, self int, name string) func(int) int {
	r, ok := subRange("/etc/sub"+kind, self, name)
	if ok {
		if _, err := exec.LookPath("new" + kind + "map"); err != nil {
			ok = false
		}
	}
	return func(id int) int {
		switch {
		case id == self:
			return 0
		case ok && id >= int(r.start) && id < int(r.start)+int(r.count):
			return 1 + id - int(r.start)
		}
		return id
	}
}

package run

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// cgroupPrefix names the cgroups Run makes: kiln-run-<kiln's pid>-<n>.
const cgroupPrefix = "kiln-run-"

// cgroupSeq numbers the cgroups of one kiln process; a counter, not state
// a caller could observe.
var cgroupSeq atomic.Uint64

// pidsCgroup is a cgroup holding one step, with pids.max set: a fork bomb
// in the step stops at the limit instead of filling the host's process
// table.
type pidsCgroup struct {
	dir string
}

// newPidsCgroup makes a cgroup with pids.max = limit next to or below this
// process's own, in the pids hierarchy: a cgroup v1 pids mount, or cgroup
// v2 where the pids controller is enabled for the new cgroup's parent. It
// fails (and Run goes on without one, with a warning) where no such place
// exists or it may not be written: an unprivileged user, a read-only
// cgroupfs, a v2 cgroup whose own processes keep it from delegating.
func newPidsCgroup(limit int64) (*pidsCgroup, error) {
	parent, err := pidsParent()
	if err != nil {
		return nil, err
	}
	sweepCgroups(parent)
	dir := filepath.Join(parent, fmt.Sprintf("%s%d-%d", cgroupPrefix, os.Getpid(), cgroupSeq.Add(1)))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("making a pids cgroup: %w", err)
	}
	cg := &pidsCgroup{dir: dir}
	if err := os.WriteFile(filepath.Join(dir, "pids.max"), []byte(strconv.FormatInt(limit, 10)), 0); err != nil {
		cg.remove()
		return nil, fmt.Errorf("setting pids.max in %s: %w", dir, err)
	}
	return cg, nil
}

// add moves pid into the cgroup; its children follow it there. A nil
// cgroup is no cgroup.
func (c *pidsCgroup) add(pid int) error {
	if c == nil {
		return nil
	}
	if err := os.WriteFile(filepath.Join(c.dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
		return fmt.Errorf("moving the step into %s: %w", c.dir, err)
	}
	return nil
}

// remove deletes the cgroup once the step's processes are gone: they die
// with the step's init, but the kernel may take a moment to reap them.
func (c *pidsCgroup) remove() {
	if c == nil {
		return
	}
	for i := 0; i < 50; i++ {
		if err := unix.Rmdir(c.dir); err == nil || errors.Is(err, unix.ENOENT) || !errors.Is(err, unix.EBUSY) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sweepCgroups removes the cgroups of kiln processes that are gone (killed
// before they could remove their own): empty by then, since every step
// dies with its kiln.
func sweepCgroups(parent string) {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range entries {
		pidS, _, ok := strings.Cut(strings.TrimPrefix(e.Name(), cgroupPrefix), "-")
		if !e.IsDir() || !strings.HasPrefix(e.Name(), cgroupPrefix) || !ok {
			continue
		}
		if pid, err := strconv.Atoi(pidS); err == nil && unix.Kill(pid, 0) == unix.ESRCH {
			_ = unix.Rmdir(filepath.Join(parent, e.Name()))
		}
	}
}

// pidsParent is the folder a step's pids cgroup is made in.
func pidsParent() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer f.Close()
	mounts, err := cgroupMounts(f)
	if err != nil {
		return "", err
	}
	own, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	return choosePidsParent(mounts, string(own), func(p string) string {
		b, _ := os.ReadFile(p)
		return string(b)
	})
}

// cgroupMount is one cgroup filesystem of the mount table.
type cgroupMount struct {
	point, root string
	v2          bool
	controllers []string // v1: the hierarchy's controllers
}

// cgroupMounts lists the cgroup and cgroup2 mounts of a mountinfo table.
func cgroupMounts(r io.Reader) ([]cgroupMount, error) {
	entries, err := readMountinfo(r)
	if err != nil {
		return nil, err
	}
	var out []cgroupMount
	for _, e := range entries {
		switch e.fstype {
		case "cgroup2":
			out = append(out, cgroupMount{point: e.point, root: e.root, v2: true})
		case "cgroup":
			out = append(out, cgroupMount{point: e.point, root: e.root, controllers: e.superOptions})
		}
	}
	return out, nil
}

// choosePidsParent picks where the step's cgroup goes, given the cgroup
// mounts, /proc/self/cgroup and a reader of cgroupfs files: below our own
// cgroup in a v1 pids hierarchy (v1 lets a cgroup with processes have
// children); in v2, below our own cgroup if it delegates pids to its
// children, else beside it if its parent does (v2 forbids enabling a
// controller below a cgroup that holds processes, as ours holds kiln).
func choosePidsParent(mounts []cgroupMount, procCgroup string, read func(string) string) (string, error) {
	var v2path string
	v1paths := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(procCgroup), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			v2path = parts[2]
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			v1paths[c] = parts[2]
		}
	}
	for _, m := range mounts {
		if !m.v2 && slices.Contains(m.controllers, "pids") {
			if p, ok := v1paths["pids"]; ok {
				return inMount(m, p), nil
			}
		}
	}
	for _, m := range mounts {
		if !m.v2 || v2path == "" {
			continue
		}
		own := inMount(m, v2path)
		if slices.Contains(strings.Fields(read(filepath.Join(own, "cgroup.subtree_control"))), "pids") {
			return own, nil
		}
		if own != m.point && slices.Contains(strings.Fields(read(filepath.Join(own, "cgroup.controllers"))), "pids") {
			return filepath.Dir(own), nil
		}
		return "", fmt.Errorf("cgroup v2 %s does not delegate the pids controller", own)
	}
	return "", errors.New("no pids cgroup hierarchy is mounted")
}

// inMount is the folder of cgroup path p under mount m.
func inMount(m cgroupMount, p string) string {
	if m.root != "/" {
		p = strings.TrimPrefix(p, m.root)
	}
	return filepath.Join(m.point, p)
}

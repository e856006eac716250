//go:build linux

package kube

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// stalePrefix names the cgroup tree of each cluster's real node,
// /kiln-kube-<test pid>-<random> in every cgroup hierarchy, and its NodeDir,
// $TMPDIR/kiln-kube-<test pid>-<random>. The kubelet
// gets it as its cgroupRoot (pods go under <tree>/kubepods) and containerd
// runs in <tree>/runtime of the freezer hierarchy, so its shims do too:
// everything the node started is found, and stopped, through the tree.
const stalePrefix = "kiln-kube-"

// cgroupTree is one /kiln-kube-... folder in every mounted hierarchy.
type cgroupTree struct {
	name    string   // "/kiln-kube-123-abcd"
	mounts  []string // mount points of the hierarchies, e.g. /sys/fs/cgroup/memory
	freezer string   // the freezer hierarchy's mount point ("" if none)
	v2      string   // the unified hierarchy's mount point ("" if none)
}

// cgroupMounts lists the mount points of the cgroup hierarchies mounted at
// their root, and which one is the v1 freezer and which the v2 unified one.
func cgroupMounts() (mounts []string, freezer, v2 string, err error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, "", "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 36 35 0:30 / /sys/fs/cgroup/memory rw,relatime shared:7 - cgroup cgroup rw,memory
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(qf) < 3 || pf[3] != "/" {
			continue
		}
		switch qf[0] {
		case "cgroup":
			mounts = append(mounts, pf[4])
			if slices.Contains(strings.Split(qf[2], ","), "freezer") {
				freezer = pf[4]
			}
		case "cgroup2":
			mounts = append(mounts, pf[4])
			v2 = pf[4]
		}
	}
	return mounts, freezer, v2, sc.Err()
}

// newCgroupTree creates /kiln-kube-<pid>-<suffix> in every hierarchy, with
// the cpuset of the root (a v1 cpuset cgroup starts empty).
func newCgroupTree(suffix string) (*cgroupTree, error) {
	mounts, freezer, v2, err := cgroupMounts()
	if err != nil {
		return nil, err
	}
	if freezer == "" && v2 == "" {
		return nil, errors.New("no freezer (v1) nor unified (v2) cgroup hierarchy mounted")
	}
	g := &cgroupTree{name: fmt.Sprintf("/%s%d-%s", stalePrefix, os.Getpid(), suffix), mounts: mounts, freezer: freezer, v2: v2}
	for i, m := range mounts {
		if err := g.create(m, m == v2); err != nil {
			for _, made := range mounts[:i+1] {
				_ = syscall.Rmdir(filepath.Join(made, g.name))
			}
			return nil, err
		}
	}
	return g, nil
}

// create makes the tree's folder in the hierarchy mounted at m.
func (g *cgroupTree) create(m string, unified bool) error {
	dir := filepath.Join(m, g.name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("creating cgroup %s: %w", dir, err)
	}
	if unified {
		return nil
	}
	for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
		if b, err := os.ReadFile(filepath.Join(m, f)); err == nil {
			if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
				return fmt.Errorf("copying %s into %s: %w", f, dir, err)
			}
		}
	}
	return nil
}

// trackingDir is where processes put in the tree are tracked: the freezer
// hierarchy on cgroup v1, the unified one otherwise.
func (g *cgroupTree) trackingDir(sub string) string {
	if g.freezer != "" {
		return filepath.Join(g.freezer, g.name, sub)
	}
	return filepath.Join(g.v2, g.name, sub)
}

// procsFile creates sub in the tracking hierarchy and returns its
// cgroup.procs: a process writing its PID there (before it execs) is in the
// tree.
func (g *cgroupTree) procsFile(sub string) (string, error) {
	dir := g.trackingDir(sub)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	return filepath.Join(dir, "cgroup.procs"), nil
}

// pids lists the PIDs in the tracking hierarchy's tree.
func pidsUnder(root string) []int {
	var pids []int
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		if err != nil {
			return nil
		}
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				pids = append(pids, n)
			}
		}
		return nil
	})
	return pids
}

// destroy kills every process left in the tree (containers, shims, a
// containerd that did not exit) and removes the tree from every hierarchy.
// The processes are frozen first, so none can fork while being killed.
func (g *cgroupTree) destroy() error {
	return destroyTree(g.mounts, g.freezer, g.v2, g.name)
}

func destroyTree(mounts []string, freezer, v2, name string) error {
	root := filepath.Join(freezer, name)
	if freezer == "" {
		root = filepath.Join(v2, name)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		pids := pidsUnder(root)
		if len(pids) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s: processes %v still running after SIGKILL", root, pids)
		}
		if freezer != "" {
			_ = os.WriteFile(filepath.Join(root, "freezer.state"), []byte("FROZEN"), 0o644)
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if freezer != "" {
			_ = os.WriteFile(filepath.Join(root, "freezer.state"), []byte("THAWED"), 0o644)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var errs []error
	for _, m := range mounts {
		if err := removeCgroupDir(filepath.Join(m, name), deadline); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeCgroupDir removes a cgroup folder and its children, deepest first
// (rmdir is the only way to remove a cgroup; its files cannot be unlinked).
func removeCgroupDir(dir string, deadline time.Time) error {
	var dirs []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	slices.Reverse(dirs)
	for _, d := range dirs {
		for {
			err := syscall.Rmdir(d)
			if err == nil || errors.Is(err, syscall.ENOENT) {
				break
			}
			if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
				return fmt.Errorf("removing cgroup %s: %w", d, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// deadOwner reports whether name is stalePrefix<pid>-... and that process
// is gone (it crashed, or was killed, before it could stop its cluster).
func deadOwner(name string) bool {
	rest, ok := strings.CutPrefix(name, stalePrefix)
	if !ok {
		return false
	}
	pidStr, _, _ := strings.Cut(rest, "-")
	pid, err := strconv.Atoi(pidStr)
	if err != nil || pid <= 0 || pid == os.Getpid() {
		return false
	}
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// sweepStale cleans up after the clusters of dead test processes: it
// destroys their cgroup trees (killing their containerd shims and
// containers, which would otherwise run forever, and so releasing their
// mount namespaces) and then removes their NodeDirs.
func sweepStale() error {
	mounts, freezer, v2, err := cgroupMounts()
	if err != nil {
		return err
	}
	var errs []error
	if track := cmp.Or(freezer, v2); track != "" {
		entries, err := os.ReadDir(track)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if !e.IsDir() || !deadOwner(e.Name()) {
				continue
			}
			if err := destroyTree(mounts, freezer, v2, "/"+e.Name()); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	entries, err := os.ReadDir(os.TempDir())
	if err != nil {
		return err
	}
	for _, e := range entries {
		dir := filepath.Join(os.TempDir(), e.Name())
		if _, err := os.Stat(filepath.Join(dir, "containerd.toml")); err != nil || !deadOwner(e.Name()) {
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

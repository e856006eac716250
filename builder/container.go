package builder

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"kiln/builder/rootfs"
	"kiln/builder/run"
)

// containerMarker, in kiln's own folder, says that kiln has already
// replaced this container's "/" with a stage filesystem: a later build in
// the same container may do it again.
const containerMarker = ".kiln-replaced-root"

// checkContainerRoot prepares container isolation, where a stage's
// filesystem is the container's own "/" (the kaniko way, for a pod that may
// not create namespaces). It lists what must survive replacing "/" (every
// mount point, kiln's binary, work and cache folders, the build context)
// and refuses a "/" holding anything else, unless forced: that is a
// container kiln was not made for, or no container at all.
func (b *builder) checkContainerRoot() error {
	mounts, err := run.ContainerMountPoints()
	if err != nil {
		return err
	}
	keep := append([]string{"/proc", "/sys", "/dev"}, mounts...)
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("container isolation: locating kiln's own binary: %w", err)
	}
	home := filepath.Dir(exe)
	keep = append(keep, home, b.work, b.bc.Root())
	keep = append(keep, imageKeeps(home)...)
	if b.o.runCache != "" {
		keep = append(keep, b.o.runCache)
	}
	keep = append(keep, b.o.keep...)
	for _, p := range keep {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		if abs, err := filepath.Abs(p); err == nil && abs != "/" && !slices.Contains(b.protected, abs) {
			b.protected = append(b.protected, abs)
		}
	}
	b.containerHome = home
	if b.o.force {
		return nil
	}
	if _, err := os.Stat(filepath.Join(home, containerMarker)); err == nil {
		return nil // kiln replaced "/" before: it holds an image of ours
	}
	foreign, err := foreignTopLevel(b.protected)
	if err != nil {
		return err
	}
	if len(foreign) > 0 {
		return fmt.Errorf("container isolation replaces / with each stage's filesystem, and / holds %s that kiln cannot tell are disposable: "+
			"run kiln from its own image (the kiln binary on scratch), or pass --force in a container that may lose its files",
			strings.Join(foreign, ", "))
	}
	return nil
}

// keepFile, in kiln's own folder, lists the other paths that are kiln's in
// its image, one absolute path a line: kaniko's /kaniko entry points, the
// debug image's /busybox shell. Container isolation keeps those that exist
// as it keeps kiln's folder, and no layer holds them.
const keepFile = "keep"

func imageKeeps(home string) []string {
	b, err := os.ReadFile(filepath.Join(home, keepFile))
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		p := filepath.Clean(strings.TrimSpace(line))
		if !filepath.IsAbs(p) || p == "/" {
			continue // comments and blank lines too
		}
		if _, err := os.Lstat(p); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// foreignTopLevel lists the entries of "/" that are neither kept paths,
// folders leading to one, nor empty folders.
func foreignTopLevel(keep []string) ([]string, error) {
	entries, err := os.ReadDir("/")
	if err != nil {
		return nil, err
	}
	var foreign []string
	for _, e := range entries {
		p := "/" + e.Name()
		if slices.ContainsFunc(keep, func(k string) bool { return k == p || strings.HasPrefix(k, p+"/") }) {
			continue
		}
		if e.IsDir() {
			if sub, err := os.ReadDir(p); err == nil && len(sub) == 0 {
				continue
			}
		}
		if e.Name() == ".dockerenv" || e.Name() == ".containerenv" {
			continue
		}
		foreign = append(foreign, p)
	}
	return foreign, nil
}

// containerRoot makes "/" the filesystem of stage s: everything but the
// protected paths is removed and the stage's image unpacked in its place.
// The stage that held "/" before loses it; it unpacks again elsewhere if a
// later instruction needs its files.
func (b *builder) containerRoot(ctx context.Context, s *stageState) (*rootfs.Root, error) {
	if s.root != nil && s.root.Dir() == "/" {
		return s.root, nil
	}
	root, err := rootfs.Open("/", rootfs.WithProtected(b.protected...))
	if err != nil {
		return nil, err
	}
	if b.onSlash != nil {
		b.onSlash.root = nil
		b.onSlash = nil
	}
	b.o.log.Info("container isolation: replacing / with the stage's filesystem", "stage", s.name, "kept", strings.Join(b.protected, " "))
	if err := os.WriteFile(filepath.Join(b.containerHome, containerMarker), nil, 0o644); err != nil {
		return nil, fmt.Errorf("container isolation: %w", err)
	}
	if err := root.Clear(ctx); err != nil {
		return nil, fmt.Errorf("container isolation: clearing /: %w", err)
	}
	img, err := s.image()
	if err != nil {
		return nil, err
	}
	stats, err := b.unpackImage(ctx, root, img, s.name)
	if err != nil {
		return nil, fmt.Errorf("container isolation: unpacking stage %s onto /: %w", s.name, err)
	}
	s.noteOwners(stats)
	for _, w := range stats.Warnings {
		b.o.log.Debug("unpacking onto /", "stage", s.name, "warning", w)
	}
	s.root, b.onSlash = root, s
	s.index = nil
	return root, nil
}

// checkContainerMounts refuses RUN --mount targets that would cover, or
// lie inside, a path container isolation keeps (a volume, kiln's folder,
// /proc): there a mount is put in place by renaming and copying, which
// must never touch those. It logs once how such mounts differ from real
// ones.
func (b *builder) checkContainerMounts(mounts []run.Mount) error {
	for _, m := range mounts {
		t := path.Clean(m.Target)
		if t == "/" {
			return fmt.Errorf("RUN --mount target %s: cannot mount over the root", m.Target)
		}
		for _, p := range b.protected {
			if t == p || strings.HasPrefix(t, p+"/") || strings.HasPrefix(p, t+"/") {
				return fmt.Errorf("RUN --mount target %s: container isolation keeps %s as it is (a volume, kiln's folder or the kernel's), and cannot put a mount there", m.Target, p)
			}
		}
	}
	if len(mounts) > 0 && !b.containerMountsNoted {
		b.containerMountsNoted = true
		b.o.log.Info("container isolation cannot mount: RUN --mount targets are put in place for the step and removed after it " +
			"(a cache as a symlink to its folder, other mounts as copies; read-only is not enforced)")
	}
	return nil
}

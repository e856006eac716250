package run

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// placed is one Mount put in place on "/" for a container-isolation step.
type placed struct {
	target  string            // resolved path of the mount point
	made    bool              // target is the mount's (a link or a copy, whole or partial)
	stash   string            // where what the image had at target waits; "" if nothing
	times   *[2]unix.Timespec // the parent folder's atime and mtime before, if it existed
	created []createdPath     // folders made to hold target
}

// placeMounts puts mounts in place on root ("/" in container isolation),
// never over or inside a path of keep, without mounting (container
// isolation may not): what the image has at a target is renamed aside in
// its own folder, and the target becomes a symlink to a Shared source or a
// copy of any other. The returned undo takes them away in reverse order,
// puts back what was there and gives parent folders their times back; it
// must run, and succeed, before the step's snapshot.
func placeMounts(ctx context.Context, root string, mounts []Mount, keep []string) (undo func() error, err error) {
	var done []placed
	undo = func() error {
		var errs []error
		for i := len(done) - 1; i >= 0; i-- {
			errs = append(errs, done[i].remove())
		}
		done = nil
		return errors.Join(errs...)
	}
	// Every target is resolved before anything is placed: a placed cache
	// is a symlink out of the root, and a later target below it would land
	// in the cache folder. Nested targets are refused for the same reason.
	targets := make([]string, len(mounts))
	for i, m := range mounts {
		p, err := securePath(root, m.Target)
		if err != nil {
			return undo, err
		}
		if p == filepath.Clean(root) {
			return undo, fmt.Errorf("%w: cannot mount over the root (%s)", ErrBadSpec, m.Target)
		}
		for j, q := range targets[:i] {
			if within(p, q) || within(q, p) {
				return undo, fmt.Errorf("%w: mount targets %s and %s nest, which container isolation cannot do (chroot and rootless isolation can)",
					ErrBadSpec, mounts[j].Target, m.Target)
			}
		}
		for _, k := range keep {
			if k = filepath.Join(root, k); within(p, k) || within(k, p) {
				return undo, fmt.Errorf("%w: mount target %s leads to %s, which container isolation keeps as it is", ErrBadSpec, m.Target, k)
			}
		}
		targets[i] = p
	}
	for i, m := range mounts {
		pl, err := place(ctx, root, i, m, targets[i])
		done = append(done, pl)
		if err != nil {
			return undo, fmt.Errorf("%w: putting the mount at %s in place: %v", ErrSetup, m.Target, err)
		}
	}
	return undo, nil
}

// place puts one mount at p. What it returns must be removed even when err
// is not nil.
func place(ctx context.Context, root string, i int, m Mount, p string) (placed, error) {
	pl := placed{target: p}
	parent := filepath.Dir(p)
	created, err := ensureMountPoint(root, parent, true)
	pl.created = created
	if err != nil {
		return pl, err
	}
	if len(created) == 0 {
		var st unix.Stat_t
		if err := unix.Stat(parent, &st); err != nil {
			return pl, err
		}
		pl.times = &[2]unix.Timespec{st.Atim, st.Mtim}
	}
	if _, err := os.Lstat(p); err == nil {
		stash, err := freeName(parent, fmt.Sprintf(".kiln-hidden-%d-%s", i, filepath.Base(p)))
		if err != nil {
			return pl, err
		}
		if err := os.Rename(p, stash); err != nil {
			return pl, fmt.Errorf("moving the image's %s aside: %w", p, err)
		}
		pl.stash = stash
	} else if !errors.Is(err, os.ErrNotExist) {
		return pl, err
	}
	pl.made = true
	if m.Shared && !m.ReadOnly {
		return pl, os.Symlink(m.Source, p)
	}
	return pl, CopyTree(ctx, m.Source, p)
}

// remove takes the mount away and puts back what was at its target.
func (pl placed) remove() error {
	if pl.made {
		if err := os.RemoveAll(pl.target); err != nil {
			return fmt.Errorf("removing the mount at %s: %w", pl.target, err)
		}
	}
	if pl.stash != "" {
		if err := os.Rename(pl.stash, pl.target); err != nil {
			return fmt.Errorf("putting the image's %s back: %w", pl.target, err)
		}
	}
	if pl.times != nil {
		_ = unix.UtimesNano(filepath.Dir(pl.target), pl.times[:])
	}
	removeCreated(pl.created)
	return nil
}

// freeName is dir/name, or dir/name-N, whichever is free first.
func freeName(dir, name string) (string, error) {
	for n := 0; n < 1000; n++ {
		p := filepath.Join(dir, name)
		if n > 0 {
			p = fmt.Sprintf("%s-%d", p, n)
		}
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			return p, nil
		} else if err != nil {
			return "", err
		}
	}
	return "", fmt.Errorf("no free name for %s in %s", name, dir)
}

// within says whether p is dir or below it.
func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

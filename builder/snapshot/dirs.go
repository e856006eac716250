package snapshot

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// dirTask is one directory of a tree walk, with what its visitor needs.
type dirTask[T any] struct {
	rel string // relative to the root; "" is the root
	arg T
}

// visitFunc looks at one directory, open as f with its names sorted, and
// returns the subdirectories to visit next.
type visitFunc[T any] func(f *os.File, names []string, t dirTask[T]) ([]dirTask[T], error)

// walkDirs visits the directory first of the tree at root and every
// directory the visits return. Up to GOMAXPROCS directories are visited at
// once (stat-bound walks scale with CPUs); a directory no goroutine is free
// for is visited inline, so the walk never waits on itself.
func walkDirs[T any](ctx context.Context, root string, first dirTask[T], visit visitFunc[T]) error {
	rootFD, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: root, Err: err}
	}
	defer unix.Close(rootFD)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		once     sync.Once
		firstErr error
	)
	fail := func(err error) error { // keeps the cause, not the cancellations it makes
		once.Do(func() { firstErr = err; cancel() })
		return err
	}
	var g errgroup.Group
	g.SetLimit(runtime.GOMAXPROCS(0))
	var run func(t dirTask[T]) error
	run = func(t dirTask[T]) error {
		if err := ctx.Err(); err != nil {
			return fail(err)
		}
		f, names, err := openDirBeneath(rootFD, root, t.rel)
		if err != nil {
			return fail(err)
		}
		subs, err := visit(f, names, t)
		f.Close()
		if err != nil {
			return fail(err)
		}
		for _, s := range subs {
			if g.TryGo(func() error { return run(s) }) {
				continue
			}
			if err := run(s); err != nil {
				return err
			}
		}
		return nil
	}
	_ = run(first)
	_ = g.Wait()
	return firstErr
}

// openDirBeneath opens the directory rel of the tree at root (rootFD) and
// reads its sorted names. No component may be a symlink: openat2 enforces
// it where the kernel (and seccomp) allow it, else only the last component
// is checked, which holds while nothing else writes the tree.
func openDirBeneath(rootFD int, root, rel string) (*os.File, []string, error) {
	display := filepath.Join(root, filepath.FromSlash(rel))
	if rel == "" {
		return openDir(rootFD, ".", display)
	}
	fd, err := unix.Openat2(rootFD, rel, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS,
	})
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) { // no openat2, or a seccomp profile that refuses it
		return openDir(unix.AT_FDCWD, display, display)
	}
	if err != nil {
		return nil, nil, &os.PathError{Op: "open", Path: display, Err: err}
	}
	return readNames(fd, display)
}

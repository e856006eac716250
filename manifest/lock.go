package manifest

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// fileLock is an advisory flock(2) on a file. On Linux NFS clients flock is
// emulated with POSIX byte-range locks, so it holds across machines when the
// server supports locking (NFSv4, or NFSv3 with lockd); see README.
type fileLock struct {
	f *os.File
}

// lockFile takes a shared or exclusive lock on path, creating the file if
// needed. It polls so that ctx can end the wait, and calls waiting once if
// the lock is not free at the first try.
func lockFile(ctx context.Context, path string, exclusive bool, waiting func()) (*fileLock, error) {
	f, err := openLock(path, exclusive)
	if err != nil {
		return nil, fmt.Errorf("opening lock %s: %w", path, err)
	}
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	// Short polls: index.json updates hold the lock for milliseconds, and a
	// long sleep would leave it idle between holders.
	delay := 5 * time.Millisecond
	for first := true; ; first = false {
		err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
		if err == nil {
			return &fileLock{f: f}, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		if first && waiting != nil {
			waiting()
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for lock %s: %w", path, ctx.Err())
		case <-time.After(delay/2 + time.Duration(rand.Int64N(int64(delay)))):
		}
		if delay < 50*time.Millisecond {
			delay *= 2
		}
	}
}

// openLock opens path to flock it. A shared lock is taken on a read-only
// descriptor, so that a reader needs no write access to the cache (flock
// works on any descriptor, through read-only mounts too). An exclusive one
// is taken on a read-write descriptor where it may be, because NFS
// emulates flock with POSIX locks, whose write locks need one; where it may
// not (another user's file), on a read-only one, which a local filesystem
// accepts. A missing file is created with the mode its folder implies (see
// perms), not the umask's.
func openLock(path string, exclusive bool) (*os.File, error) {
	flag := os.O_RDONLY
	if exclusive {
		flag = os.O_RDWR
	}
	for {
		f, err := os.OpenFile(path, flag, 0)
		if err == nil {
			return f, nil
		}
		if flag == os.O_RDWR && (errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS)) {
			flag = os.O_RDONLY
			continue
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		mode := permsUnder(filepath.Dir(path)).file
		f, err = os.OpenFile(path, flag|os.O_CREATE|os.O_EXCL, mode)
		if errors.Is(err, fs.ErrExist) {
			continue // another process made it meanwhile
		}
		if err != nil {
			return nil, err
		}
		_ = f.Chmod(mode) // best effort: the lock works whatever its mode
		return f, nil
	}
}

// LockFile takes a shared or exclusive flock on path (created if needed),
// waiting as long as ctx allows and calling waiting once if it must wait.
// The returned func releases it.
func LockFile(ctx context.Context, path string, exclusive bool, waiting func()) (unlock func() error, err error) {
	l, err := lockFile(ctx, path, exclusive, waiting)
	if err != nil {
		return nil, err
	}
	return l.unlock, nil
}

func (l *fileLock) unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := unix.Flock(int(l.f.Fd()), unix.LOCK_UN)
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	l.f = nil
	return err
}

package run

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// initStamp is set at link time (-X kiln/builder/run.initStamp=...) to the
// stamp initbin/build.sh printed when it built the embedded init: the
// embedded init is used only when its own stamp file says the same, so a
// stale one (a build that did not rebuild it) is never started. Empty (a
// plain go build, go test): no embedded init is used.
var initStamp string

var initProg struct {
	once sync.Once
	path string
	why  string
}

// InitProgram is the program started as each RUN step's init and as the
// namespace probe, and why: the small init embedded in this binary
// (initexe), loaded once into a sealed memory file and started as
// /proc/self/fd/N, when the binary has one of its own stamp; else this
// program itself (/proc/self/exe), whose MaybeInit takes over as well.
func InitProgram() (path, why string) {
	initProg.once.Do(func() {
		initProg.path, initProg.why = "/proc/self/exe", "this program (no embedded init of its build)"
		if initStamp == "" {
			return
		}
		path, err := loadInit()
		if err != nil {
			initProg.why = "this program: " + err.Error()
			return
		}
		initProg.path, initProg.why = path, "the embedded init"
	})
	return initProg.path, initProg.why
}

// loadInit copies the embedded init into a memory file, sealed against
// writes, and returns its /proc/self/fd path; the file stays open for the
// life of the process (the descriptor is close-on-exec: a child resolves
// the path before its exec closes it).
func loadInit() (string, error) {
	stamp, err := initFS.ReadFile(initDir + "/kiln-init.stamp")
	if err != nil {
		return "", errors.New("no embedded init")
	}
	if got := strings.TrimSpace(string(stamp)); got != initStamp {
		return "", fmt.Errorf("the embedded init is of another build (stamp %s, want %s)", got, initStamp)
	}
	// Streamed, not read whole: a 2 MB copy on the heap is a page fault
	// per 4 KB page, and costs more than the write into the memory file.
	bin, err := initFS.Open(initDir + "/kiln-init")
	if err != nil {
		return "", errors.New("no embedded init")
	}
	defer bin.Close()
	flags := unix.MFD_CLOEXEC | unix.MFD_ALLOW_SEALING
	fd, err := unix.MemfdCreate("kiln-init", flags|unix.MFD_EXEC) // vm.memfd_noexec may want it said
	if errors.Is(err, unix.EINVAL) {
		fd, err = unix.MemfdCreate("kiln-init", flags) // a kernel before 6.3
	}
	if err != nil {
		return "", fmt.Errorf("memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "kiln-init")
	if _, err := io.CopyBuffer(struct{ io.Writer }{f}, bin, make([]byte, 256<<10)); err != nil {
		f.Close()
		return "", fmt.Errorf("loading the embedded init: %w", err)
	}
	seals := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, seals); err != nil {
		f.Close()
		return "", fmt.Errorf("sealing the embedded init: %w", err)
	}
	keepInit = f // never closed: every step's init is started from it
	return fmt.Sprintf("/proc/self/fd/%d", f.Fd()), nil
}

// keepInit keeps the memory file open (and its descriptor number valid).
var keepInit *os.File

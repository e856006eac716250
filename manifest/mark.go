package manifest

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
)

// markXattr is the extended attribute kiln sets on a blob file once the
// file was read whole and matched its digest: "<digest> <size> <mtime>".
// A later use of the blob that needs it checked whole (an output layout
// linking the warm cache's base layer) trusts the file, without reading
// it again, while its size and mtime are still the marked ones: a file
// written in place since has another mtime, a file replaced is another
// inode without the mark. As make and git trust a file's stat, this
// guards against accidents (a partial or foreign write), not against
// someone who may write the cache anyway; `kiln warm --verify` rehashes
// every blob regardless.
const markXattr = "user.kiln.verified"

// markValue is the mark of blob h for a file of stat st.
func markValue(h v1.Hash, st *unix.Stat_t) []byte {
	return fmt.Appendf(nil, "%s %d %d.%09d", h, st.Size, st.Mtim.Sec, st.Mtim.Nsec)
}

// markVerified marks f, a file just read whole and found to hold blob h,
// as checked. It is best effort: a filesystem without user xattrs, a
// read-only mount or a file of another user leaves the file unmarked, and
// its next use hashes it as before. A read-only file this process owns is
// made writable for its owner for the moment of the write only when
// private (a temp file not committed yet): a committed blob's mode is left
// as readers see it.
func markVerified(f *os.File, h v1.Hash, private bool) {
	fd := int(f.Fd())
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return
	}
	v := markValue(h, &st)
	err := unix.Fsetxattr(fd, markXattr, v, 0)
	if !errors.Is(err, unix.EACCES) || !private || int(st.Uid) != os.Geteuid() {
		return
	}
	mode := st.Mode & 0o7777
	if unix.Fchmod(fd, mode|0o200) != nil {
		return
	}
	_ = unix.Fsetxattr(fd, markXattr, v, 0)
	_ = unix.Fchmod(fd, mode)
}

// markedVerified says whether f carries the mark of blob h (size bytes)
// for its size and mtime now.
func markedVerified(f *os.File, h v1.Hash, size int64) bool {
	fd := int(f.Fd())
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size != size {
		return false
	}
	want := markValue(h, &st)
	got := make([]byte, len(want)+1)
	n, err := unix.Fgetxattr(fd, markXattr, got)
	return err == nil && bytes.Equal(got[:n], want)
}

// MarkVerified marks f, a committed blob just read whole and found to hold
// blob h, as checked (best effort, as markVerified).
func MarkVerified(f *os.File, h v1.Hash) { markVerified(f, h, false) }

// UnmarkVerified drops f's mark, a blob found not to match its digest:
// its next use hashes it again (best effort).
func UnmarkVerified(f *os.File) { _ = unix.Fremovexattr(int(f.Fd()), markXattr) }

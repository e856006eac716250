package rootfs

import (
	"bytes"
	"context"
	"errors"
	"io"

	"golang.org/x/sys/unix"
)

// copyContent streams src into the file open as fd through the applier's
// fixed buffer, and checks ctx between blocks. Blocks of zeros become
// holes: a sparse file (a famous one is /var/log/lastlog) stays sparse
// instead of filling the disk with the zeros the tar reader expands it to.
func (a *applier) copyContent(ctx context.Context, fd int, src io.Reader) (int64, error) {
	var written int64
	holes := false
	for {
		if err := ctx.Err(); err != nil {
			return written, err
		}
		n, rerr := fill(src, a.buf)
		if n > 0 {
			hole, err := a.writeBlock(fd, a.buf[:n])
			if err != nil {
				return written, err
			}
			holes = holes || hole
			written += int64(n)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return written, rerr
		}
	}
	if holes {
		// A hole at the end is only a size: make it one.
		return written, unix.Ftruncate(fd, written)
	}
	return written, nil
}

// writeBlock writes block, or skips over it (hole) when it is all zeros.
func (a *applier) writeBlock(fd int, block []byte) (hole bool, err error) {
	if bytes.Equal(block, a.zeros[:len(block)]) {
		_, err = unix.Seek(fd, int64(len(block)), io.SeekCurrent)
		return true, err
	}
	return false, writeAll(fd, block)
}

// writeAll writes b whole: a write may be short, or interrupted.
func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrShortWrite
		}
		b = b[n:]
	}
	return nil
}

// fill reads until buf is full or src fails; io.EOF comes with the last bytes.
func fill(src io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := src.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

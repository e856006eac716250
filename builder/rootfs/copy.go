package rootfs

import (
	"bytes"
	"context"
	"io"
	"os"
)

// copyContent streams src into f through the applier's fixed buffer, and
// checks ctx between blocks. Blocks of zeros become holes: a sparse file
// (a famous one is /var/log/lastlog) stays sparse instead of filling the
// disk with the zeros the tar reader expands it to.
func (a *applier) copyContent(ctx context.Context, f *os.File, src io.Reader) (int64, error) {
	var written int64
	holes := false
	for {
		if err := ctx.Err(); err != nil {
			return written, err
		}
		n, rerr := fill(src, a.buf)
		if n > 0 {
			hole, err := a.writeBlock(f, a.buf[:n])
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
		return written, f.Truncate(written)
	}
	return written, nil
}

// writeBlock writes block, or skips over it (hole) when it is all zeros.
func (a *applier) writeBlock(f *os.File, block []byte) (hole bool, err error) {
	if bytes.Equal(block, a.zeros[:len(block)]) {
		_, err = f.Seek(int64(len(block)), io.SeekCurrent)
		return true, err
	}
	_, err = f.Write(block)
	return false, err
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

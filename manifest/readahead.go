package manifest

import (
	"context"
	"errors"
	"io"
	"sync"
)

// readaheadBlock is the size of the blocks a Readahead holds.
const readaheadBlock = 256 << 10

// readahead reads a layer stream in a goroutine of its own, a few blocks
// ahead of its reader, so that what produces the stream (fetching,
// decompressing, checking digests) runs beside what consumes it (writing
// files, hashing the uncompressed tar) instead of between them. Read gives
// the stream's bytes and its error (io.EOF at the end), or the context's
// once it is done; Close stops the goroutine, closes the stream and returns
// what that said. One reader, which must call Close.
type readahead struct {
	ctx  context.Context
	full chan []byte // blocks read, in order; closed after the last
	free chan []byte // blocks to fill
	stop chan struct{}
	done chan struct{}
	once sync.Once

	cur, block []byte // what is left of the block being read; the block
	err        error  // the stream's read error; the reader sees it once full is closed
	closeErr   error  // the stream's Close
}

// Readahead starts reading the stream open() gives, up to blocks blocks of
// 256 KiB ahead of its reader: at once, even before the first Read, so that
// a layer can be fetched while another is applied. An error from open is the
// first Read's, and Close's.
func Readahead(ctx context.Context, open func() (io.ReadCloser, error), blocks int) io.ReadCloser {
	return newReadahead(ctx, open, blocks)
}

func newReadahead(ctx context.Context, open func() (io.ReadCloser, error), blocks int) *readahead {
	ra := &readahead{
		ctx:  ctx,
		full: make(chan []byte, blocks),
		free: make(chan []byte, blocks),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	for range blocks {
		ra.free <- make([]byte, readaheadBlock)
	}
	go ra.run(open)
	return ra
}

func (ra *readahead) run(open func() (io.ReadCloser, error)) {
	defer close(ra.done)
	defer close(ra.full)
	rc, err := open()
	if err != nil {
		ra.err, ra.closeErr = err, err
		return
	}
	ra.err = ra.pump(rc)
	ra.closeErr = rc.Close()
}

// pump moves rc's bytes into blocks until rc ends or fails, or Close.
func (ra *readahead) pump(rc io.Reader) error {
	for {
		var b []byte
		select {
		case b = <-ra.free:
		case <-ra.stop:
			return errClosed
		}
		n, err := fill(rc, b)
		if n > 0 {
			select {
			case ra.full <- b[:n]:
			case <-ra.stop:
				return errClosed
			}
		}
		if err != nil {
			return err
		}
	}
}

// errClosed ends a stream closed before its end.
var errClosed = errors.New("layer stream closed")

func (ra *readahead) Read(p []byte) (int, error) {
	for len(ra.cur) == 0 {
		if ra.block != nil {
			ra.free <- ra.block[:cap(ra.block)] // never blocks: free holds every block not in use
			ra.block = nil
		}
		select {
		case b, ok := <-ra.full:
			if !ok {
				return 0, ra.err
			}
			ra.block, ra.cur = b, b
		case <-ra.ctx.Done():
			return 0, ra.ctx.Err()
		}
	}
	n := copy(p, ra.cur)
	ra.cur = ra.cur[n:]
	return n, nil
}

// Close stops reading ahead, waits for the goroutine and returns the
// stream's Close error.
func (ra *readahead) Close() error {
	ra.once.Do(func() { close(ra.stop) })
	<-ra.done
	return ra.closeErr
}

// fill reads src until buf is full or src fails (io.EOF at its end).
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

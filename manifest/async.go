package manifest

import (
	"errors"
	"io"
	"sync"
)

// Blocks of a decompressed stream read ahead by asyncReader: a few MiB in
// flight at most.
const (
	asyncBlock  = 256 << 10
	asyncBlocks = 4
)

// asyncReader reads src in a goroutine of its own, a few blocks ahead of
// its reader: a layer's decompression (and the reading and hashing of the
// compressed blob under it) runs beside the hashing of the uncompressed
// tar and the writing of its files, on another CPU, instead of between
// them. One reader; Close stops the goroutine, waits for it and closes src.
type asyncReader struct {
	src  io.ReadCloser
	full chan []byte // blocks read, in order; closed after the last
	free chan []byte
	stop chan struct{}
	done chan struct{}
	once sync.Once

	cur, block []byte
	err        error // src's error (io.EOF at its end), set before full is closed
}

func newAsyncReader(src io.ReadCloser) *asyncReader {
	a := &asyncReader{
		src:  src,
		full: make(chan []byte, asyncBlocks),
		free: make(chan []byte, asyncBlocks),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	for range asyncBlocks {
		a.free <- make([]byte, asyncBlock)
	}
	go a.run()
	return a
}

func (a *asyncReader) run() {
	defer close(a.done)
	defer close(a.full)
	for {
		var b []byte
		select {
		case b = <-a.free:
		case <-a.stop:
			a.err = errors.New("read after close")
			return
		}
		n, err := io.ReadFull(a.src, b[:cap(b)])
		if n > 0 {
			select {
			case a.full <- b[:n]:
			case <-a.stop:
				a.err = errors.New("read after close")
				return
			}
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = io.EOF // a short last block
		}
		if err != nil {
			a.err = err
			return
		}
	}
}

func (a *asyncReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if len(a.cur) == 0 {
		if a.block != nil {
			a.free <- a.block // never blocks: at most asyncBlocks exist
			a.block = nil
		}
		b, ok := <-a.full
		if !ok {
			return 0, a.err
		}
		a.cur, a.block = b, b
	}
	n := copy(p, a.cur)
	a.cur = a.cur[n:]
	return n, nil
}

// Close stops the goroutine, waits until it no longer reads src, and
// closes src.
func (a *asyncReader) Close() error {
	a.once.Do(func() { close(a.stop) })
	<-a.done
	return a.src.Close()
}

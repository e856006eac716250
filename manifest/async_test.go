package manifest

import (
	"bytes"
	"errors"
	"io"
	"math/rand"
	"testing"
)

type errAfter struct {
	r      io.Reader
	err    error
	closed bool
}

func (e *errAfter) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if errors.Is(err, io.EOF) {
		return n, e.err
	}
	return n, err
}

func (e *errAfter) Close() error { e.closed = true; return nil }

// TestAsyncReader: the bytes come through whole and in order, whatever the
// reader's buffer sizes; the source's error comes after its bytes; Close
// before the end stops the goroutine and closes the source.
func TestAsyncReader(t *testing.T) {
	data := make([]byte, 3*asyncBlock*asyncBlocks+12345)
	rand.New(rand.NewSource(1)).Read(data)
	for _, size := range []int{1, 511, 4096, asyncBlock, 3 * asyncBlock} {
		src := &errAfter{r: bytes.NewReader(data), err: io.EOF}
		a := newAsyncReader(src)
		var out bytes.Buffer
		buf := make([]byte, size)
		for {
			n, err := a.Read(buf)
			out.Write(buf[:n])
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(out.Bytes(), data) {
			t.Fatalf("buffer %d: got %d bytes, not the %d of the source", size, out.Len(), len(data))
		}
		if err := a.Close(); err != nil || !src.closed {
			t.Fatalf("Close: %v, source closed %v", err, src.closed)
		}
	}

	boom := errors.New("boom")
	a := newAsyncReader(&errAfter{r: bytes.NewReader(data[:1000]), err: boom})
	got, err := io.ReadAll(a)
	if !errors.Is(err, boom) || !bytes.Equal(got, data[:1000]) {
		t.Fatalf("got %d bytes and %v, want 1000 and boom", len(got), err)
	}
	a.Close()

	src := &errAfter{r: bytes.NewReader(data), err: io.EOF}
	a = newAsyncReader(src)
	if _, err := a.Read(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil || !src.closed {
		t.Fatalf("early Close: %v, source closed %v", err, src.closed)
	}
}
